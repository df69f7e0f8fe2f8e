"""The status LED (RGB where fitted) and the mute LED, as gpiozero devices.

Patterns run on gpiozero's background threads, so setting one never blocks the loop.
"""
from __future__ import annotations

from typing import Any

from hal.device import Device
from hal.errors import DeviceUnavailable
from hal.gpio import pin_factory
from hal.profile import LedPin, LedsProfile, RgbPins

COLOURS = {
    "off": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "amber": (1.0, 0.5, 0.0),
    "cyan": (0.0, 1.0, 1.0), "magenta": (1.0, 0.0, 1.0),
}
PATTERNS = ("off", "solid", "blink", "pulse")


class Leds(Device):
    """``set_status(colour, pattern)`` and ``set_mute(on)``; ``status()`` says what is shown."""

    kind = "leds"
    backend = "gpiozero"

    def __init__(self, profile: LedsProfile) -> None:
        super().__init__()
        from gpiozero import LED, PWMLED, RGBLED
        from gpiozero.exc import GPIOZeroError

        self.profile = profile
        factory = self._factory = pin_factory(profile.pin_factory)
        self.status_led: Any = None
        self.mute_led: Any = None
        self.shown = {"colour": "off", "pattern": "off"}
        self.is_mute_lit = False
        spec: Any = None
        try:
            spec = profile.status
            if isinstance(spec, RgbPins):
                self.status_led = RGBLED(spec.red, spec.green, spec.blue, active_high=profile.active_high,
                                         pin_factory=factory)
            elif isinstance(spec, LedPin):
                self.status_led = PWMLED(spec.pin, active_high=profile.active_high, pin_factory=factory)
            spec = profile.mute
            if spec is not None:
                self.mute_led = LED(spec.pin, active_high=profile.active_high, pin_factory=factory)
        except (GPIOZeroError, OSError, ValueError) as exc:
            self._close()
            raise DeviceUnavailable(f"leds: cannot drive {spec} ({type(exc).__name__}: {exc})") from None

    @property
    def is_rgb(self) -> bool:
        return isinstance(self.profile.status, RgbPins)

    def set_status(self, colour: str, pattern: str = "solid", period_s: float = 1.0) -> None:
        """Show ``colour`` (a COLOURS name) as ``pattern`` (one of PATTERNS)."""
        self._check_open()
        if colour not in COLOURS:
            raise ValueError(f"leds: colour must be one of {', '.join(COLOURS)}, got {colour!r}")
        if pattern not in PATTERNS:
            raise ValueError(f"leds: pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
        self.shown = {"colour": colour, "pattern": pattern}
        led = self.status_led
        if led is None:
            return
        rgb = COLOURS[colour] if self.is_rgb else max(COLOURS[colour])
        off = (0.0, 0.0, 0.0) if self.is_rgb else 0.0
        if pattern == "off" or colour == "off":
            led.off()
        elif pattern == "solid":
            led.value = rgb
        elif pattern == "blink":
            self._animate(led, "blink", on_time=period_s / 2, off_time=period_s / 2, rgb=rgb, off=off)
        else:
            self._animate(led, "pulse", fade_in_time=period_s / 2, fade_out_time=period_s / 2, rgb=rgb, off=off)

    def _animate(self, led: Any, how: str, rgb: Any, off: Any, **timing: float) -> None:
        if self.is_rgb:
            getattr(led, how)(on_color=rgb, off_color=off, background=True, **timing)
        elif how == "blink":
            led.blink(background=True, **timing)
        else:
            led.pulse(background=True, **timing)

    def set_mute(self, lit: bool) -> None:
        """Light the mute LED exactly when the microphone is muted."""
        self._check_open()
        self.is_mute_lit = bool(lit)
        if self.mute_led is not None:
            self.mute_led.value = self.is_mute_lit

    def pins(self) -> dict[str, Any]:
        """Each LED's pin object by role (tests read their recorded states)."""
        # The factory hands out the pin object it already reserved for each number.
        spec = self.profile.status
        found = {}
        if isinstance(spec, RgbPins):
            found.update({f"status.{c}": self._factory.pin(getattr(spec, c)) for c in ("red", "green", "blue")})
        elif isinstance(spec, LedPin):
            found["status"] = self._factory.pin(spec.pin)
        if self.profile.mute is not None:
            found["mute"] = self._factory.pin(self.profile.mute.pin)
        return found

    def _close(self) -> None:
        for led in (self.status_led, self.mute_led):
            if led is not None:
                led.close()

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(status_led=dict(self.shown), mute_led=self.is_mute_lit, rgb=self.is_rgb,
                      pins={role: str(pin) for role, pin in ({} if self.is_closed else self.pins()).items()})
        return status
