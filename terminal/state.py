"""The terminal's state machine: the only place that changes the box's state.

Tasks (button watcher, device monitors, control socket, calendar, the call session and the
provisioning agent) post Events to its queue; ``handle()`` decides what follows and notifies
listeners (LEDs, status, room screen, and the Terminal, which starts and stops the call
session to match ``call_url``). Every transition is logged with its reason.

A call: join pressed in idle → joining (``call_url`` set: the calendar's meeting, else the
standing one) → ``call_connected`` → in_call; ``call_lost`` → degraded while the session
rejoins; join pressed again or leave requested → leaving → ``call_ended`` → idle.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

log = logging.getLogger("roombox.terminal")


class State(enum.StrEnum):
    BOOTING = "booting"
    UNPROVISIONED = "unprovisioned"
    IDLE = "idle"
    JOINING = "joining"
    IN_CALL = "in_call"
    LEAVING = "leaving"
    DEGRADED = "degraded"


@dataclass(frozen=True)
class Event:
    """Something that happened, named in the past tense: ``join_pressed``, ``device_lost``."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    at: float
    before: State
    after: State
    reason: str


Listener = Callable[["StateMachine"], None]


class StateMachine:
    """Holds state, reason, mute and the set of lost devices; ``handle(event)`` is the only
    mutator. Listeners run after every change, on the event loop, and must not block."""

    def __init__(self, meeting_url: str | None = None, needs_provisioning: bool = False) -> None:
        self.state = State.BOOTING
        self.reason = "starting"
        # True until the provisioning link applies a configuration; a box given its meeting
        # locally never needs one.
        self.needs_provisioning = needs_provisioning
        self.provisioning_reason = "looking for the provisioning service"
        self.is_muted = False
        self.meeting_url = meeting_url          # the room's standing meeting
        self.calendar_url: str | None = None    # the calendar's meeting, live or imminent
        self.upcoming: dict[str, Any] | None = None
        self.call_url: str | None = None        # set exactly while a call session should run
        self.lost_devices: dict[str, str] = {}
        self.history: list[Transition] = []
        self.notices: list[str] = []
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def handle(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.name}", None)
        if handler is None:
            log.warning("terminal: ignoring unknown event %r", event.name)
            return
        handler(**event.data)
        self._notify()

    def _go(self, state: State, reason: str) -> None:
        if state == self.state and reason == self.reason:
            return
        self.history.append(Transition(time.monotonic(), self.state, state, reason))
        log.info("terminal: %s -> %s (%s)", self.state, state, reason)
        self.state, self.reason = state, reason

    def _notify(self) -> None:
        for listener in self._listeners:
            listener(self)

    def _ready_state(self) -> tuple[State, str]:
        if self.lost_devices:
            kind, why = next(iter(self.lost_devices.items()))
            return State.DEGRADED, f"{kind}: {why}"
        if self.needs_provisioning:
            return State.UNPROVISIONED, self.provisioning_reason
        return State.IDLE, "ready"

    # Event handlers: one per event name.

    def _on_devices_opened(self, failures: dict[str, str] | None = None) -> None:
        self.lost_devices.update(failures or {})
        self._go(*self._ready_state())

    def _on_device_lost(self, kind: str, reason: str) -> None:
        self.lost_devices[kind] = reason
        self._settle()

    def _on_device_restored(self, kind: str) -> None:
        self.lost_devices.pop(kind, None)
        self._settle()

    def _settle(self) -> None:
        """Out of a call, go to whichever of idle, unprovisioned or degraded is true now."""
        if not self.in_call and self.state in (State.IDLE, State.DEGRADED, State.UNPROVISIONED):
            self._go(*self._ready_state())

    def _on_provisioning_progress(self, reason: str) -> None:
        self.provisioning_reason = reason
        if self.needs_provisioning:
            self._settle()

    def _on_settings_applied(self, meeting_url: str | None = None, why: str = "settings applied") -> None:
        """The provisioning link applied a configuration: the box is provisioned."""
        self.meeting_url = meeting_url
        self.needs_provisioning = False
        self._say(f"settings: {why}")
        self._settle()

    @property
    def in_call(self) -> bool:
        """A call session should be running (joining, in the call, rejoining or leaving)."""
        return self.call_url is not None

    def _on_join_pressed(self, url: str | None = None) -> None:
        if self.in_call:
            if self.state != State.LEAVING:
                self._go(State.LEAVING, "join pressed again")
            return
        self._start_call(url, "join pressed")

    def _on_join_requested(self, url: str | None = None) -> None:
        if self.in_call:
            self._say(f"join: already in a call ({redact(self.call_url)})")
            return
        self._start_call(url, "join requested")

    def _start_call(self, url: str | None, why: str) -> None:
        if self.state not in (State.IDLE, State.DEGRADED):
            self._say(f"join: not possible while {self.state}" + (
                f" ({self.reason})" if self.state == State.UNPROVISIONED else ""))
            return
        url = url or self.calendar_url or self.meeting_url
        if not url:
            self._say("join: no meeting is configured for this room")
            return
        self.call_url = url
        self._go(State.JOINING, f"{why}: {redact(url)}")

    def _on_leave_requested(self, reason: str = "leave requested") -> None:
        if self.in_call and self.state != State.LEAVING:
            self._go(State.LEAVING, reason)

    def _on_call_connected(self, meeting: str = "") -> None:
        if self.in_call and self.state in (State.JOINING, State.DEGRADED):
            self._go(State.IN_CALL, f"in {meeting or redact(self.call_url)}")

    def _on_call_lost(self, reason: str) -> None:
        if self.in_call and self.state != State.LEAVING:
            self._go(State.DEGRADED, f"call: {reason}; rejoining")

    def _on_call_ended(self, reason: str = "left") -> None:
        if not self.in_call:
            return
        self.call_url = None
        if reason != "left":
            self._say(f"call: ended ({reason})")
        self._go(*self._ready_state())

    def _on_mute_pressed(self) -> None:
        self._set_muted(not self.is_muted, "mute button")

    def _on_mute_requested(self) -> None:
        self._set_muted(True, "mute requested in the room")

    def _on_unmute_requested(self) -> None:
        self._set_muted(False, "unmute requested in the room")

    def _on_remote_mute_requested(self, by: str = "the meeting") -> None:
        # Only someone in the room can unmute: there is no remote unmute event.
        if not self.is_muted:
            self._say(f"mute: muted at the request of {by}")
        self._set_muted(True, f"remote request by {by}")

    def _set_muted(self, muted: bool, why: str) -> None:
        if muted != self.is_muted:
            self.is_muted = muted
            log.info("terminal: microphone %s (%s)", "muted" if muted else "unmuted", why)

    def _on_calendar_updated(self, meeting_url: str | None = None,
                             upcoming: dict[str, Any] | None = None) -> None:
        self.calendar_url = meeting_url
        if upcoming and upcoming != self.upcoming:
            self._say(f"calendar: {upcoming.get('summary', 'a meeting')} starts at {upcoming.get('start')}")
        self.upcoming = upcoming

    def _on_stop_requested(self, reason: str = "stopping") -> None:
        if self.in_call and self.state != State.LEAVING:
            self._go(State.LEAVING, reason)
        else:
            log.info("terminal: %s in state %s", reason, self.state)

    def _say(self, notice: str) -> None:
        log.info("terminal: %s", notice)
        self.notices = (self.notices + [notice])[-5:]

    def status(self) -> dict[str, Any]:
        return {"state": str(self.state), "reason": self.reason, "muted": self.is_muted,
                "lost_devices": dict(self.lost_devices), "notices": list(self.notices),
                "transitions": len(self.history),
                "meeting": redact(self.meeting_url), "calendar_meeting": redact(self.calendar_url),
                "call": redact(self.call_url), "upcoming": self.upcoming}


SECRET_PARAMS = ("pin", "token", "secret")


def redact(url: str | None) -> str | None:
    """A meeting URL fit for logs and status: PIN, token and secret masked."""
    if not url:
        return None
    parts = urlsplit(url)
    query = [(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query)]
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rsplit('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))
