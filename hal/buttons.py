"""Buttons (join/leave, mute, optional volume) as gpiozero Buttons; events reach asyncio.

gpiozero calls its callbacks from its own threads; they are handed to the event loop with
``call_soon_threadsafe`` and never touch application state directly.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from hal.device import Device
from hal.errors import DeviceUnavailable
from hal.gpio import pin_factory, pin_label
from hal.profile import ButtonsProfile


@dataclass(frozen=True)
class ButtonEvent:
    button: str        # "join", "mute", "volume_up", "volume_down"
    action: str        # "pressed", "released", "held"
    at: float          # time.monotonic() when gpiozero saw it


class Buttons(Device):
    """The profile's buttons. ``events()`` yields ButtonEvents; ``is_pressed(name)`` reads one."""

    kind = "buttons"
    backend = "gpiozero"

    def __init__(self, profile: ButtonsProfile) -> None:
        super().__init__()
        from gpiozero import Button
        from gpiozero.exc import GPIOZeroError

        self.profile = profile
        self.factory_name = profile.pin_factory
        factory = pin_factory(profile.pin_factory)
        self._buttons: dict[str, Any] = {}
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.presses: dict[str, int] = {}
        try:
            for name, spec in profile.named().items():
                button = Button(spec.pin, pull_up=spec.pull_up, bounce_time=spec.bounce_ms / 1000 or None,
                                hold_time=spec.hold_s, pin_factory=factory)
                self._buttons[name] = button
                self.presses[name] = 0
                button.when_pressed = self._callback(name, "pressed")
                button.when_released = self._callback(name, "released")
                button.when_held = self._callback(name, "held")
        except (GPIOZeroError, OSError, ValueError) as exc:
            self._close()
            raise DeviceUnavailable(f"buttons: cannot use {name} on {pin_label(spec.pin)} "
                                    f"({type(exc).__name__}: {exc})") from None

    def _callback(self, name: str, action: str):
        def fire() -> None:
            if action == "pressed":
                self.presses[name] += 1
            event = ButtonEvent(name, action, time.monotonic())
            for loop, queue in list(self._subscribers):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(queue.put_nowait, event)
        return fire

    @property
    def names(self) -> list[str]:
        return list(self._buttons)

    def is_pressed(self, name: str) -> bool:
        self._check_open()
        return bool(self._buttons[name].is_pressed)

    def device(self, name: str) -> Any:
        """The gpiozero Button (tests drive its ``pin``)."""
        return self._buttons[name]

    async def events(self) -> AsyncIterator[ButtonEvent]:
        """Every button event from now on, in order."""
        self._check_open()
        entry = (asyncio.get_running_loop(), asyncio.Queue())
        self._subscribers.append(entry)
        try:
            while True:
                yield await entry[1].get()
        finally:
            self._subscribers.remove(entry)

    def _close(self) -> None:
        for button in self._buttons.values():
            button.close()

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["pin_factory"] = self.factory_name
        status["buttons"] = {
            name: {"pin": pin_label(spec.pin),
                   "pressed": None if self.is_closed else bool(self._buttons[name].is_pressed),
                   "presses": self.presses[name]}
            for name, spec in self.profile.named().items() if name in self._buttons}
        return status
