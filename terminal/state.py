"""The terminal's state machine: the only place that changes the box's state.

Tasks (button watcher, device monitors, later the conference adapter and the provisioning
agent) post Events to its queue; ``handle()`` decides what follows and notifies listeners
(LEDs, status, room screen). Every transition is logged with its reason.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

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

    def __init__(self) -> None:
        self.state = State.BOOTING
        self.reason = "starting"
        self.is_muted = False
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
        return State.IDLE, "ready"

    # Event handlers: one per event name.

    def _on_devices_opened(self, failures: dict[str, str] | None = None) -> None:
        self.lost_devices.update(failures or {})
        self._go(*self._ready_state())

    def _on_device_lost(self, kind: str, reason: str) -> None:
        self.lost_devices[kind] = reason
        if self.state in (State.IDLE, State.DEGRADED):
            self._go(*self._ready_state())

    def _on_device_restored(self, kind: str) -> None:
        self.lost_devices.pop(kind, None)
        if self.state in (State.IDLE, State.DEGRADED):
            self._go(*self._ready_state())

    def _on_join_pressed(self) -> None:
        if self.state == State.IDLE:
            self._say("join: no meeting is configured for this room")
        elif self.state == State.DEGRADED:
            self._say(f"join: not possible while degraded ({self.reason})")

    def _on_mute_pressed(self) -> None:
        self.is_muted = not self.is_muted
        log.info("terminal: microphone %s", "muted" if self.is_muted else "unmuted")

    def _on_stop_requested(self, reason: str = "stopping") -> None:
        if self.state == State.IN_CALL:
            self._go(State.LEAVING, reason)
        else:
            log.info("terminal: %s in state %s", reason, self.state)

    def _say(self, notice: str) -> None:
        log.info("terminal: %s", notice)
        self.notices = (self.notices + [notice])[-5:]

    def status(self) -> dict[str, Any]:
        return {"state": str(self.state), "reason": self.reason, "muted": self.is_muted,
                "lost_devices": dict(self.lost_devices), "notices": list(self.notices),
                "transitions": len(self.history)}
