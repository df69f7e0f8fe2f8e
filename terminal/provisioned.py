"""The terminal's side of provisioning: runs the ProvisioningAgent for this box, turns its
events into state-machine events and meeting settings, answers its health check while a new
configuration is on trial, and runs the signed commands it delivers.

A box with its meeting given locally (``--meeting``, ``ROOMBOX_MEETING``) needs none of this;
``roombox run --provisioning auto`` (the default) starts the link only when there is no
local meeting or calendar. Until a configuration is committed the box is *unprovisioned* and
shows why (looking for the service, its activation code, waiting for an admin).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import shlex
import time
from pathlib import Path
from typing import Any

import httpx

from provisioning.agent.agent import AgentEvent, ProvisioningAgent
from provisioning.agent.discovery import (DEFAULT_SEED_DIRS, ServiceLocation, browse_dns_sd, discover,
                                          typed_location)
from provisioning.errors import ProvisioningError
from provisioning.schema import Settings
from terminal.notify import SystemdNotifier
from terminal.state import Event, State

log = logging.getLogger("roombox.terminal.provisioning")

STATE_DIR_ENV = "STATE_DIRECTORY"        # systemd's StateDirectory=roombox sets it
DEFAULT_STATE_DIR = Path("/var/lib/roombox")
REBOOT_COMMAND_ENV = "ROOMBOX_REBOOT_COMMAND"
DEFAULT_REBOOT_COMMAND = "systemctl reboot"
REACH_TIMEOUT_S = 10.0
IDENTIFY_S = 30.0
COMMAND_TIMEOUT_S = 120.0
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
              "error": logging.ERROR}


def default_state_dir() -> Path:
    """Where the box keeps its identity and configuration: systemd's state directory."""
    found = os.environ.get(STATE_DIR_ENV, "").split(":")[0]
    return Path(found) / "provisioning" if found else DEFAULT_STATE_DIR / "provisioning"


def meeting_settings_from(provisioned: Settings, base: Any) -> Any:
    """The terminal's MeetingSettings for a provisioned configuration, keeping what only the
    box knows (control socket, ICE host limits). Raises ValueError naming what it cannot use."""
    from aiortc import RTCIceServer

    from media.video import VideoConfig
    turn = tuple(RTCIceServer(urls=list(t.urls), username=t.username or None,
                              credential=t.credential or None) for t in provisioned.turn_servers)
    video = dataclasses.replace(base.video or VideoConfig(),
                                max_bitrate_bps=provisioned.max_send_bitrate_bps)
    if video.bitrate_bps > video.max_bitrate_bps:
        video = dataclasses.replace(video, bitrate_bps=video.max_bitrate_bps,
                                    min_bitrate_bps=min(video.min_bitrate_bps, video.max_bitrate_bps))
    return dataclasses.replace(
        base, meeting_url=provisioned.meeting_url or None,
        calendar_url=provisioned.calendar_url or None, ice_servers=turn,
        display_name=provisioned.room or base.display_name,
        audio_stages=tuple(provisioned.audio_stages), video=video)


async def conference_reachable(meeting_url: str, verify_tls: bool | str = True) -> tuple[bool, str]:
    """Is the meeting's conferencing service answering? Any HTTP answer counts (a WebSocket
    port answers a plain GET with an error status); no answer or a TLS failure does not."""
    from terminal.conference import parse_meeting_url
    endpoint = parse_meeting_url(meeting_url).endpoint
    http_url = endpoint.replace("wss://", "https://", 1).replace("ws://", "http://", 1)
    try:
        async with httpx.AsyncClient(verify=verify_tls, timeout=REACH_TIMEOUT_S, trust_env=False) as client:
            response = await client.get(http_url)
    except httpx.HTTPError as exc:
        return False, f"conferencing service at {http_url} unreachable ({exc or type(exc).__name__})"
    if response.status_code >= 500:
        return False, f"conferencing service at {http_url} answered HTTP {response.status_code}"
    return True, f"conferencing service at {http_url} answered HTTP {response.status_code}"


class ProvisioningLink:
    """Owns the box's ProvisioningAgent while the terminal runs (``await run()``).

    ``terminal`` is the terminal.app.Terminal; the link calls ``terminal.apply_settings()``
    and posts events to it, and never changes its state directly."""

    def __init__(self, terminal: Any, state_dir: Path | None = None, *,
                 seed_dirs: tuple[Path, ...] = DEFAULT_SEED_DIRS, use_dns_sd: bool = True,
                 retry_base_s: float | None = None) -> None:
        self.terminal = terminal
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.seed_dirs = tuple(Path(d) for d in seed_dirs)
        self.use_dns_sd = use_dns_sd
        self.retry_base_s = retry_base_s
        self.typed: ServiceLocation | None = None
        self.agent: ProvisioningAgent | None = None
        self.events: asyncio.Queue[AgentEvent] = asyncio.Queue()
        self.activation: dict[str, Any] | None = None
        self.last_selftest: dict[str, Any] | None = None
        self.last_bundle: str | None = None
        self.problem = ""

    # --- start-up -------------------------------------------------------------------------
    async def prepare(self, serial: str) -> None:
        """Make the agent and apply the committed configuration, if any, before the state
        machine first decides (so a provisioned box boots straight to idle)."""
        extra = {} if self.retry_base_s is None else {"retry_base_s": self.retry_base_s}
        # A thread: the first boot makes the device key, and the config store reads files.
        self.agent = await asyncio.to_thread(
            ProvisioningAgent, self.state_dir, serial, self.events, self._health_check,
            lambda: self.terminal.machine.in_call, self.locate,
            hardware_profile=self.terminal.profile.name, health_summary=self.summary, **extra)
        store = self.agent.store
        if store is not None and store.version > 0:
            self._apply(store.running, f"configuration version {store.version}")
        else:
            why = "enrolled; waiting for the room's configuration" if store is not None \
                else "looking for the provisioning service"
            self.terminal.post(Event("provisioning_progress", {"reason": why}))

    def locate(self) -> ServiceLocation:
        """Seed file, then DNS-SD, then the URL an admin typed (blocking: a thread runs it)."""
        return discover(self.seed_dirs, browse_dns_sd if self.use_dns_sd else None, self.typed)

    def set_typed_location(self, url: str, ca_sha256: str) -> ServiceLocation:
        """``roombox provision URL FINGERPRINT`` through the control socket; ValueError if bad."""
        try:
            self.typed = typed_location(url, ca_sha256)
        except ProvisioningError as exc:
            raise ValueError(str(exc)) from None
        log.info("provisioning: service %s typed by an admin", self.typed.url)
        if self.agent is not None:
            self.agent.wake()
        return self.typed

    async def run(self) -> None:
        if self.agent is None:
            raise RuntimeError("ProvisioningLink.run() before prepare()")
        async with asyncio.TaskGroup() as group:
            group.create_task(self.agent.run(), name="provisioning-agent")
            group.create_task(self._pump(), name="provisioning-events")

    # --- agent events -------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            event = await self.events.get()
            try:
                await self._on_event(event)
            except Exception:   # one bad event must not end provisioning for the box's lifetime
                log.exception("provisioning: handling %s failed", event.kind)

    async def _on_event(self, event: AgentEvent) -> None:
        data, kind = event.data, event.kind
        if kind == "activation_code":
            self.activation = {**data, "expires_at": time.time() + float(data["expires_in"])}
            self._progress(f"activation code {data['user_code']}: approve it at {data['verification_uri']}")
        elif kind == "enrolled":
            self.activation = None
            self._progress("enrolled; waiting for the room's configuration")
        elif kind in ("enrolment_rejected", "enrolment_revoked"):
            self.activation = None
            self._progress(f"{kind.replace('_', ' ')}: {data['reason']}")
        elif kind == "service_unreachable":
            self.problem = data["reason"]
            self._progress(data["reason"])
        elif kind == "config_committed":
            self.problem = ""
            log.info("provisioning: configuration version %s committed", data["version"])
        elif kind == "config_rolled_back":
            self.problem = f"configuration version {data['version']} rolled back: {data['reason']}"
            self._apply(data["settings"], f"back to the last good configuration ({data['reason']})")
        elif kind in ("config_refused", "command_refused"):
            self.problem = data["reason"]
            log.warning("provisioning: %s", data["reason"])
        elif kind == "command_received":
            await self._run_command(data["id"], data["kind"], data.get("args") or {})

    def _progress(self, reason: str) -> None:
        if self.terminal.machine.needs_provisioning:
            self.terminal.post(Event("provisioning_progress", {"reason": reason}))

    def _apply(self, provisioned: Settings, why: str) -> bool:
        try:
            settings = meeting_settings_from(provisioned, self.terminal.settings)
        except ValueError as exc:
            self.problem = f"configuration unusable: {exc}"
            log.error("provisioning: %s", self.problem)
            return False
        level = LOG_LEVELS.get(provisioned.log_level)
        if level is not None and not os.environ.get("ROOMBOX_LOG_LEVEL"):
            logging.getLogger("roombox").setLevel(level)
        self.terminal.apply_settings(settings, why)
        return True

    async def _health_check(self, provisioned: Settings) -> tuple[bool, str]:
        """The trial: apply the new settings, then is the box healthy with them?"""
        version = self.agent.store.trial.version if self.agent and self.agent.store and self.agent.store.trial else "?"
        SystemdNotifier.reloading(f"configuration version {version}")
        try:
            if not self._apply(provisioned, f"trying configuration version {version}"):
                return False, self.problem
            lost = self.terminal.machine.lost_devices
            if lost:
                kind, why = next(iter(lost.items()))
                return False, f"required peripheral missing: {kind}: {why}"
            if provisioned.meeting_url:
                ok, detail = await conference_reachable(provisioned.meeting_url,
                                                        self.terminal.settings.verify_tls)
                if not ok:
                    return False, detail
            return True, "healthy"
        finally:
            machine = self.terminal.machine
            SystemdNotifier.reloaded(f"{machine.state}: {machine.reason}")

    # --- commands -----------------------------------------------------------------------
    async def _run_command(self, command_id: str, kind: str, args: dict) -> None:
        log.info("provisioning: running command %s (%s)", kind, command_id)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                detail = await getattr(self, f"_command_{kind}")(args)
            ok = True
        except Exception as exc:   # reported to the service, never fatal to the terminal
            ok, detail = False, f"{type(exc).__name__}: {exc}"
            log.warning("provisioning: command %s (%s) failed: %s", kind, command_id, detail)
        self.agent.report_result(command_id, "done" if ok else "failed", detail)

    async def _command_rejoin(self, args: dict) -> str:
        # Disruptive, so the agent hands it over only outside a call: the next join starts a
        # fresh session with the current settings, and the calendar is read again now.
        if self.terminal.calendar is not None:
            await self.terminal.calendar.refresh()
        return "not in a call; the next join uses the current settings"

    async def _command_identify(self, args: dict) -> str:
        seconds = float(args.get("seconds", IDENTIFY_S))
        self.terminal.identify(seconds)
        return f"status LED blinking white for {seconds:.0f} s"

    async def _command_selftest(self, args: dict) -> str:
        from terminal.selftest import run_selftest
        checks = await run_selftest(self.terminal.profile)
        failed = [c.device for c in checks if not c.ok]
        self.last_selftest = {"at": time.time(), "checks": [c.as_dict() for c in checks]}
        return f"{len(checks) - len(failed)}/{len(checks)} checks passed" + (
            f"; failed: {', '.join(failed)}" if failed else "")

    async def _command_collect_diagnostics(self, args: dict) -> str:
        from terminal.diag import build_bundle_async
        out = self.state_dir.parent / "diagnostics" / f"roombox-diag-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.tar.gz"
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await build_bundle_async(out, profile=self.terminal.profile, running=self.terminal.status(),
                                 health=[])
        self.last_bundle = str(out)
        return f"bundle written to {out} ({out.stat().st_size} bytes)"

    async def _command_technician_access(self, args: dict) -> str:
        expires_at = self.terminal.technician.grant(str(args.get("code_sha256", "")),
                                                    float(args.get("valid_s", 0)))
        return f"technician code accepted until {time.strftime('%H:%M:%SZ', time.gmtime(expires_at))}"

    async def _command_reboot(self, args: dict) -> str:
        command = shlex.split(os.environ.get(REBOOT_COMMAND_ENV) or DEFAULT_REBOOT_COMMAND)
        proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(30):
                _, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"{shlex.join(command)} did not finish within 30 s") from None
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} exited {proc.returncode}: "
                               f"{err.decode(errors='replace').strip()[:200]}")
        return f"reboot requested ({shlex.join(command)})"

    # --- views ----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The health summary the agent sends at check-in: state, problems, no media."""
        status = self.terminal.status()
        return {"state": status["state"], "reason": status["reason"],
                "lost_devices": status["lost_devices"], "in_call": self.terminal.machine.in_call,
                "uptime_s": status["uptime_s"], "profile": status["profile"],
                "selftest_failed": [c["device"] for c in (self.last_selftest or {}).get("checks", [])
                                    if not c["ok"]]}

    def status(self) -> dict[str, Any]:
        out = dict(self.agent.status()) if self.agent else {"state": "starting"}
        if self.activation and self.activation["expires_at"] > time.time():
            out["verification_uri"] = self.activation["verification_uri_complete"]
            out["code_expires_at"] = self.activation["expires_at"]
        else:
            out["user_code"] = None
        out["problem"] = self.problem or None
        out["last_diagnostics"] = self.last_bundle
        return out

