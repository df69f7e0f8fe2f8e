"""The terminal process: opens the box's devices, feeds events to the state machine and
shows its state on the LEDs. Later issues add the call session, provisioning agent and
control socket as further tasks of ``Terminal.run``."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hal.board import open_board
from hal.buttons import Buttons
from hal.errors import HalError
from hal.leds import Leds
from hal.profile import HardwareProfile
from terminal.state import Event, State, StateMachine

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
BOARD_REFRESH_S = 10.0


class Terminal:
    """One box. ``await run(stop)`` until ``stop`` is set; ``post()`` hands it events."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self.machine = StateMachine()
        self.buttons: Buttons | None = None
        self.leds: Leds | None = None
        self.board_info: dict[str, Any] = {}
        self.started_at = time.monotonic()
        self.reached_idle = asyncio.Event()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self.machine.add_listener(self._on_change)

    def post(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def run(self, stop: asyncio.Event) -> None:
        failures = await self._open_devices()
        self._on_change(self.machine)
        self.post(Event("devices_opened", {"failures": failures}))
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._dispatch(), name="dispatch"),
                         group.create_task(self._refresh_board(), name="board")]
                if self.buttons is not None:
                    tasks.append(group.create_task(self._watch_buttons(), name="buttons"))
                await stop.wait()
                self.machine.handle(Event("stop_requested"))
                for task in tasks:
                    task.cancel()
        finally:
            await asyncio.to_thread(self._close_devices)

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
            self.machine.handle(event)

    async def _watch_buttons(self) -> None:
        async for event in self.buttons.events():
            if event.action == "pressed" and event.button in ("join", "mute"):
                self.post(Event(f"{event.button}_pressed"))

    async def _refresh_board(self) -> None:
        while self._board is not None:
            await asyncio.sleep(BOARD_REFRESH_S)
            self.board_info = await asyncio.to_thread(self._board.info)

    def _on_change(self, machine: StateMachine) -> None:
        if machine.state == State.IDLE:
            self.reached_idle.set()
        if self.leds is not None:
            colour, pattern = LED_PATTERNS[machine.state]
            if self.leds.shown != {"colour": colour, "pattern": pattern}:
                self.leds.set_status(colour, pattern)
            self.leds.set_mute(machine.is_muted)

    def status(self) -> dict[str, Any]:
        """The one aggregate every view reads (CLI, status page, health, room screen)."""
        devices = {}
        for name, device in (("buttons", self.buttons), ("leds", self.leds)):
            if device is not None:
                devices[name] = device.status()
        return {"profile": self.profile.name, **self.machine.status(),
                "uptime_s": round(time.monotonic() - self.started_at, 1),
                "board": self.board_info, "devices": devices}
