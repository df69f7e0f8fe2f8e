"""The terminal process: opens the box's devices, feeds events to the state machine, shows
its state on the LEDs and runs the call session the state machine asks for.

The state machine decides; ``Terminal`` only reconciles: when ``machine.call_url`` is set in
joining it starts one ``CallSession`` task, when the machine goes to leaving it cancels that
task, and when the task has finished it posts ``call_ended``. The control socket and the
calendar poller are further tasks of ``Terminal.run`` that only post events."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from hal.board import open_board
from hal.buttons import Buttons
from hal.errors import HalError
from hal.leds import Leds
from hal.profile import HardwareProfile
from terminal.screen_sink import FrameSink, RecordingSink
from terminal.state import Event, State, StateMachine
from terminal.status_page.access import TechnicianAccess

log = logging.getLogger("roombox.terminal")

# What the status LED shows in each state (README, "Status LED").
LED_PATTERNS = {
    State.BOOTING: ("white", "pulse"),
    State.UNPROVISIONED: ("blue", "blink"),
    State.IDLE: ("green", "solid"),
    State.JOINING: ("green", "blink"),
    State.IN_CALL: ("red", "solid"),      # red: the camera is open and the room is live
    State.LEAVING: ("amber", "blink"),
    State.DEGRADED: ("amber", "pulse"),
}
# Degraded in a call (rejoining): the camera is still open, so the LED stays red.
REJOINING_PATTERN = ("red", "pulse")
IDENTIFY_PATTERN = ("white", "blink")   # the provisioning command "identify"
BOARD_REFRESH_S = 10.0
LEAVE_TIMEOUT_S = 10.0
ICE_HOSTS_ENV = "ROOMBOX_ICE_HOST_ADDRESSES"   # e.g. "127.0.0.1" in a loopback-only namespace
LOSS_FLOOR_ENV = "ROOMBOX_LOSS_FLOOR_PCT"


@dataclass(frozen=True)
class MeetingSettings:
    """How this box meets: the standing meeting, the room calendar, STUN/TURN servers
    (none by default: nothing public), the name shown to others, the control socket."""

    meeting_url: str | None = None
    calendar_url: str | None = None
    ice_servers: tuple[Any, ...] = field(default=(), repr=False)   # TURN credentials inside
    display_name: str = "roombox"
    control_path: str | None = None
    verify_tls: bool | str = True
    ice_host_addresses: tuple[str, ...] = ()   # () = every address aioice finds
    audio_stages: tuple[str, ...] | None = None  # None: media/audio's default chain; (): none
    audio_beam: str = "delay-and-sum"            # or "mvdr", "superdirective" (media.audio.beamformer)
    video: Any = None          # media.video.VideoConfig, or None for its defaults
    # Loss to plan for at least on the legs the box cannot see (SFU -> each viewer): None
    # keeps the defaults (video FEC 0 %: parity once loss is seen; audio 20 %); a site on
    # bad Wi-Fi raises it.
    loss_floor_pct: float | None = None

    def __post_init__(self) -> None:
        from terminal.conference import parse_meeting_url
        if self.meeting_url:
            parse_meeting_url(self.meeting_url)      # MeetingRejected (ValueError) names the problem
        from media.audio.beamformer import METHODS
        if self.audio_beam not in METHODS:
            raise ValueError(f"ROOMBOX_AUDIO_BEAM must be one of {', '.join(METHODS)}, got {self.audio_beam!r}")
        if self.loss_floor_pct is not None and not 0 <= self.loss_floor_pct <= 50:
            raise ValueError(f"{LOSS_FLOOR_ENV} must be a percentage from 0 to 50, got {self.loss_floor_pct!r}")
        if self.calendar_url and not self.calendar_url.startswith(("http://", "https://")):
            raise ValueError(f"calendar URL must start with http:// or https://, got {self.calendar_url!r}")

    @classmethod
    def from_args(cls, args: Any, environ: dict[str, str] | None = None) -> "MeetingSettings":
        """From ``roombox run``'s options (--meeting, --calendar, --control-socket), falling
        back to the local config in the environment (systemd reads /etc/roombox/roombox.env):
        ROOMBOX_MEETING, ROOMBOX_CALENDAR, ROOMBOX_DISPLAY_NAME, and one TURN server as
        ROOMBOX_TURN_URL (turn:/turns:), ROOMBOX_TURN_USERNAME, ROOMBOX_TURN_CREDENTIAL, and
        ROOMBOX_AUDIO_BEAM (delay-and-sum, the default; mvdr; superdirective), and
        ROOMBOX_LOSS_FLOOR_PCT (loss the video FEC and the audio redundancy plan for at least)."""
        import os

        from terminal.control import default_path
        env = os.environ if environ is None else environ
        hosts = tuple(a.strip() for a in env.get(ICE_HOSTS_ENV, "").split(",") if a.strip())
        return cls(meeting_url=args.meeting or env.get("ROOMBOX_MEETING") or None,
                   calendar_url=args.calendar or env.get("ROOMBOX_CALENDAR") or None,
                   display_name=env.get("ROOMBOX_DISPLAY_NAME") or "roombox",
                   ice_servers=_turn_from_env(env), ice_host_addresses=hosts,
                   audio_beam=env.get("ROOMBOX_AUDIO_BEAM") or "delay-and-sum",
                   loss_floor_pct=_percent_from_env(env, LOSS_FLOOR_ENV),
                   control_path=args.control_socket or default_path())


def _percent_from_env(env: Any, key: str) -> float | None:
    text = env.get(key, "").strip()
    if not text:
        return None
    try:
        return float(text.removesuffix("%"))
    except ValueError:
        raise ValueError(f"{key} must be a percentage from 0 to 50, got {text!r}") from None


def _turn_from_env(env: Any) -> tuple[Any, ...]:
    url = env.get("ROOMBOX_TURN_URL", "").strip()
    if not url:
        return ()
    if not url.startswith(("turn:", "turns:")):
        # No STUN-only entries: a public STUN server is exactly what we must not add by default.
        raise ValueError(f"ROOMBOX_TURN_URL must be a turn: or turns: URL, got {url!r}")
    from aiortc import RTCIceServer
    return (RTCIceServer(urls=[url], username=env.get("ROOMBOX_TURN_USERNAME") or None,
                         credential=env.get("ROOMBOX_TURN_CREDENTIAL") or None),)


class Terminal:
    """One box. ``await run(stop)`` until ``stop`` is set; ``post()`` hands it events."""

    def __init__(self, profile: HardwareProfile, settings: MeetingSettings | None = None,
                 sink: FrameSink | None = None, screen: Any = None) -> None:
        self.profile = profile
        self.settings = settings or MeetingSettings()
        self.sink = sink if sink is not None else RecordingSink()
        self.screen = screen                     # terminal.screen.RoomScreen, if shown
        self.machine = StateMachine(self.settings.meeting_url)
        self.session = None                      # terminal.session.CallSession while in a call
        self._session_task: asyncio.Task | None = None
        self._end_reason = "left"
        self._encoder_name: str | None = None    # the encoder the last call chose
        self._encoder_probed: dict[str, Any] | None = None
        self._waiters: dict[int, asyncio.Future] = {}
        self.control = None                      # terminal.control.ControlServer, if configured
        self.calendar = None                     # terminal.calendar.CalendarPoller, if configured
        self._calendar_task: asyncio.Task | None = None
        self.provisioning = None                 # terminal.provisioned.ProvisioningLink, if enabled
        self.technician = TechnicianAccess()     # codes that open the technician status page
        self._identify_until = 0.0
        self._press_test_until = 0.0
        self._group: asyncio.TaskGroup | None = None
        self.buttons: Buttons | None = None
        self.leds: Leds | None = None
        self.board_info: dict[str, Any] = {}
        self.network: dict[str, Any] = {}        # terminal.network.network_status()
        self.started_at = time.monotonic()
        self.reached_idle = asyncio.Event()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self.machine.add_listener(self._on_change)

    def enable_provisioning(self, **link_options: Any) -> None:
        """Provision this box through the service (``terminal.provisioned``): it starts
        unprovisioned until a configuration is applied."""
        from terminal.provisioned import ProvisioningLink
        self.provisioning = ProvisioningLink(self, **link_options)
        self.machine.needs_provisioning = True

    def apply_settings(self, settings: MeetingSettings, why: str) -> None:
        """New meeting settings (from provisioning): the next call uses them; the calendar
        poller restarts if its URL changed. A call in progress is left alone."""
        previous, self.settings = self.settings, settings
        if settings.calendar_url != previous.calendar_url:
            self._restart_calendar()
        self.post(Event("settings_applied", {"meeting_url": settings.meeting_url, "why": why}))

    def identify(self, seconds: float) -> None:
        """Blink the status LED white for ``seconds`` so a technician finds this box."""
        self._identify_until = time.monotonic() + seconds
        self._show_leds(self.machine)
        asyncio.get_running_loop().call_later(seconds + 0.05, self._show_leds, self.machine)

    def start_press_test(self, seconds: float) -> None:
        """For ``seconds`` the buttons are counted (status) but do nothing: a technician can
        press each one (``roombox health --press-test``) without joining or muting the room."""
        self._press_test_until = time.monotonic() + seconds
        log.info("terminal: button press test for %.0f s; presses are counted, not acted on", seconds)

    def post(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def submit(self, event: Event) -> None:
        """Post ``event`` and return once the state machine has handled it."""
        handled = asyncio.get_running_loop().create_future()
        self._waiters[id(event)] = handled
        self.post(event)
        await handled

    async def run(self, stop: asyncio.Event) -> None:
        failures = await self._open_devices()
        if self.provisioning is not None:
            await self._prepare_provisioning()
        self._on_change(self.machine)
        self.post(Event("devices_opened", {"failures": failures}))
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                tasks = [group.create_task(self._dispatch(), name="dispatch"),
                         group.create_task(self._refresh_board(), name="board")]
                if self.buttons is not None:
                    tasks.append(group.create_task(self._watch_buttons(), name="buttons"))
                tasks += self._start_services(group)
                if self.screen is not None:
                    tasks.append(group.create_task(self.screen.follow(self.status), name="screen"))
                self._reconcile_call(self.machine)
                await stop.wait()
                self.machine.handle(Event("stop_requested"))
                await self._await_session_end()
                for task in tasks + [self._calendar_task]:
                    if task is not None:
                        task.cancel()
        finally:
            await asyncio.to_thread(self._close_devices)

    async def _prepare_provisioning(self) -> None:
        serial = self.board_info.get("serial") or ""
        try:
            await self.provisioning.prepare(serial)
        except (ValueError, OSError) as exc:
            # The box still serves a locally given meeting; it just cannot be provisioned.
            log.error("terminal: provisioning unavailable (%s)", exc)
            self.post(Event("provisioning_progress", {"reason": f"provisioning unavailable: {exc}"}))
            self.provisioning = None

    def _start_services(self, group: asyncio.TaskGroup) -> list[asyncio.Task]:
        tasks = []
        if self.settings.control_path:
            from terminal.control import ControlServer
            self.control = ControlServer(self.settings.control_path, self)
            tasks.append(group.create_task(self.control.serve(), name="control"))
        if self.provisioning is not None:
            tasks.append(group.create_task(self.provisioning.run(), name="provisioning"))
        self._restart_calendar()
        return tasks

    def _restart_calendar(self) -> None:
        if self._group is None:
            return
        if self._calendar_task is not None:
            self._calendar_task.cancel()
            self._calendar_task, self.calendar = None, None
            self.post(Event("calendar_updated", {"meeting_url": None, "upcoming": None}))
        if self.settings.calendar_url:
            from terminal.calendar import CalendarPoller
            self.calendar = CalendarPoller(self.settings.calendar_url, self.post,
                                           verify_tls=self.settings.verify_tls)
            self._calendar_task = self._group.create_task(self.calendar.run(), name="calendar")

    # ---- the call session, as the state machine asks ----------------------------------

    def _reconcile_call(self, machine: StateMachine) -> None:
        if self._group is None:
            return
        if machine.state == State.JOINING and self._session_task is None:
            self._end_reason = "left"
            self._session_task = self._group.create_task(self._run_session(machine.call_url),
                                                         name="call-session")
            # A callback, not a finally: a task cancelled before its first step never
            # enters its body, and the machine must still hear that the call ended.
            self._session_task.add_done_callback(self._session_done)
        elif machine.state == State.LEAVING and self._session_task is not None:
            self._session_task.cancel()
        if self.session is not None and self.session.is_muted != machine.is_muted:
            self.session.set_muted(machine.is_muted)

    async def _run_session(self, url: str) -> None:
        from terminal.conference import ConferenceError
        from terminal.session import CallSession, limit_ice_host_addresses

        if self.settings.ice_host_addresses:
            limit_ice_host_addresses(self.settings.ice_host_addresses)
        try:
            self.session = CallSession(
                url, self.profile, self.post, self.sink, ice_servers=self.settings.ice_servers,
                video_config=self.settings.video, display_name=self.settings.display_name,
                verify_tls=self.settings.verify_tls, encoder_name=self._encoder_name,
                encoder_probed=self._encoder_probed, audio_stages=self.settings.audio_stages,
                audio_beam=self.settings.audio_beam, loss_floor_pct=self.settings.loss_floor_pct)
            self.session.set_muted(self.machine.is_muted)
            try:
                await self.session.run()
            finally:
                self._encoder_name = self.session.encoder_name
                self._encoder_probed = self.session.encoder_probed
            self._end_reason = "the call ended"
        except ConferenceError as exc:
            self._end_reason = str(exc)
            log.warning("terminal: call failed (%s)", exc)

    def _session_done(self, task: asyncio.Task) -> None:
        self.session = None
        self._session_task = None
        self.post(Event("call_ended", {"reason": self._end_reason}))

    async def _await_session_end(self) -> None:
        task = self._session_task
        if task is not None:
            try:
                async with asyncio.timeout(LEAVE_TIMEOUT_S):
                    await asyncio.wait([task])
            except TimeoutError:
                log.error("terminal: the call did not end within %s s", LEAVE_TIMEOUT_S)

    async def _open_devices(self) -> dict[str, str]:
        failures = {}
        for kind, opener in (("buttons", Buttons), ("leds", Leds)):
            try:
                setattr(self, kind, await asyncio.to_thread(opener, getattr(self.profile, kind)))
            except HalError as exc:
                failures[kind] = str(exc)
                log.warning("terminal: %s unavailable (%s)", kind, exc)
        try:
            self._board = await asyncio.to_thread(open_board, self.profile.board)
            self.board_info = await asyncio.to_thread(self._board.info)
        except HalError as exc:
            self._board = None
            failures["board"] = str(exc)
        return failures

    def _close_devices(self) -> None:
        if self.leds is not None:
            self.leds.set_mute(False)
            self.leds.set_status("off")
            self.leds.close()
        for device in (self.buttons, self._board):
            if device is not None:
                device.close()

    async def _dispatch(self) -> None:
        while True:
            event = await self._events.get()
            try:
                self.machine.handle(event)
            finally:
                waiter = self._waiters.pop(id(event), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def _watch_buttons(self) -> None:
        async for event in self.buttons.events():
            if time.monotonic() < self._press_test_until:
                log.info("terminal: press test: %s %s", event.button, event.action)
                continue
            if event.action == "pressed" and event.button in ("join", "mute"):
                self.post(Event(f"{event.button}_pressed"))
            elif event.action == "held" and event.button == "mute" and self.screen is not None:
                # Holding mute (5 s by default) opens the technician view on the room screen.
                shown = self.screen.toggle_technician()
                log.info("terminal: technician view %s", "opened" if shown else "closed")

    async def _refresh_board(self) -> None:
        from terminal.network import network_status
        while True:
            self.network = await asyncio.to_thread(network_status)
            await asyncio.sleep(BOARD_REFRESH_S)
            if self._board is not None:
                self.board_info = await asyncio.to_thread(self._board.info)

    def _on_change(self, machine: StateMachine) -> None:
        if machine.state == State.IDLE:
            self.reached_idle.set()
        self._reconcile_call(machine)
        self._show_leds(machine)
        if self.screen is not None:
            self.screen.update(self.status())     # at once, not at the next poll

    def _show_leds(self, machine: StateMachine) -> None:
        if self.leds is None:
            return
        colour, pattern = LED_PATTERNS[machine.state]
        if machine.state == State.DEGRADED and machine.in_call:
            colour, pattern = REJOINING_PATTERN
        elif time.monotonic() < self._identify_until and not machine.in_call:
            colour, pattern = IDENTIFY_PATTERN
        if self.leds.shown != {"colour": colour, "pattern": pattern}:
            self.leds.set_status(colour, pattern)
        self.leds.set_mute(machine.is_muted)

    def status(self) -> dict[str, Any]:
        """The one aggregate every view reads (CLI, status page, health, room screen)."""
        devices = {}
        for name, device in (("buttons", self.buttons), ("leds", self.leds)):
            if device is not None:
                devices[name] = device.status()
        status = {"profile": self.profile.name, **self.machine.status(),
                  "uptime_s": round(time.monotonic() - self.started_at, 1),
                  "board": self.board_info, "devices": devices}
        if self.session is not None:
            status["call_session"] = self.session.status()
        if self.calendar is not None:
            status["calendar"] = self.calendar.status()
        if self.provisioning is not None:
            status["provisioning"] = self.provisioning.status()
        status["room"] = {"name": self.settings.display_name}
        status["network"] = self.network
        # Relay URLs only, never their credentials: health checks their reachability.
        status["ice_servers"] = [url for server in self.settings.ice_servers
                                 for url in ([server.urls] if isinstance(server.urls, str) else server.urls)]
        return status
