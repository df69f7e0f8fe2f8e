"""gpiozero pin factories by profile name. The simulated box uses gpiozero's own
MockFactory (with PWM-capable pins, so RGB LEDs can fade), not a hand-written fake."""
from __future__ import annotations

import threading
from typing import Any

from hal.errors import DeviceUnavailable
from hal.registry import env_override

_FACTORY_CLASSES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
}
_factories: dict[str, Any] = {}
_lock = threading.Lock()


def pin_factory(name: str) -> Any:
    """The process's pin factory called ``name`` (one per name, shared by buttons and LEDs,
    since two factories on one GPIO chip would fight over the pins).

    ``ROOMBOX_GPIO_BACKEND`` overrides the profile (e.g. ``mock`` on a development PC).
    Raises DeviceUnavailable naming the factory and the library's reason.
    """
    name = env_override("gpio") or name
    with _lock:
        if name not in _factories:
            _factories[name] = _make(name)
        return _factories[name]


def _make(name: str) -> Any:
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin
        return MockFactory(pin_class=MockPWMPin)
    if name not in _FACTORY_CLASSES:
        raise DeviceUnavailable(f"gpio: unknown pin factory {name!r} (expected mock, {', '.join(_FACTORY_CLASSES)})")
    module_name, class_name = _FACTORY_CLASSES[name]
    try:
        module = __import__(module_name, fromlist=[class_name])
        return getattr(module, class_name)()
    except ImportError as exc:
        raise DeviceUnavailable(f"gpio: pin factory {name!r} is not installed ({exc.name or exc})") from None
    except Exception as exc:  # gpiozero raises many types for "no GPIO chip here"
        raise DeviceUnavailable(f"gpio: pin factory {name!r} cannot start ({type(exc).__name__}: {exc})") from None


def pin_label(pin: int | str) -> str:
    return f"GPIO{pin}" if isinstance(pin, int) else str(pin)
