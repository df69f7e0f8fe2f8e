"""Finding and opening backends: environment override, then the profile, then probing.

Backends register under the entry-point group ``roombox.hal.<kind>``. Nothing is chosen at
import time: a backend module is imported only when its backend is tried, so picamera2 is
never imported on a box whose profile does not ask for it.
"""
from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points
from typing import Any, Callable

from hal.errors import BackendNotFound, DeviceUnavailable

log = logging.getLogger("roombox.hal")

# What "auto" tries, best first. The simulated backend is never probed into: a box that
# silently fell back to a test pattern would look healthy and show nothing real.
PROBE_ORDER = {
    "camera": ("picamera2", "v4l2"),
    "microphone": ("alsa",),
    "speaker": ("alsa",),
    "board": ("raspberrypi", "generic"),
}


def backend_names(kind: str) -> list[str]:
    """Names registered for ``kind``, sorted."""
    return sorted(ep.name for ep in entry_points(group=f"roombox.hal.{kind}"))


def backend_class(kind: str, name: str) -> type:
    """Import and return the backend class ``name`` of ``kind``."""
    for ep in entry_points(group=f"roombox.hal.{kind}", name=name):
        return ep.load()
    raise BackendNotFound(f"{kind}: no backend {name!r} (registered: {', '.join(backend_names(kind)) or 'none'})")


def env_override(kind: str) -> str | None:
    """``ROOMBOX_<KIND>_BACKEND`` (e.g. ROOMBOX_CAMERA_BACKEND=sim), for development and tests."""
    value = os.environ.get(f"ROOMBOX_{kind.upper()}_BACKEND", "").strip()
    return value or None


def candidates(kind: str, configured: str) -> list[str]:
    """The backends to try for ``kind``, in order."""
    override = env_override(kind)
    if override:
        return [override]
    if configured == "auto":
        return list(PROBE_ORDER[kind])
    return [configured]


def open_backend(kind: str, configured: str, factory: Callable[[type], Any]) -> Any:
    """Open the first backend of ``candidates(kind, configured)`` that works.

    ``factory(cls)`` constructs (and so opens) a device from its class. Every failure but
    the last is logged with its reason; if all fail, DeviceUnavailable lists them all.
    """
    reasons = []
    names = candidates(kind, configured)
    for i, name in enumerate(names):
        try:
            device = factory(backend_class(kind, name))
        except (DeviceUnavailable, BackendNotFound) as exc:
            if len(names) == 1:
                raise
            reasons.append(f"{name}: {exc}")
            if i + 1 < len(names):
                log.warning("%s: falling back from %s to %s (%s)", kind, name, names[i + 1], exc)
            continue
        device.backend = name
        if i:
            log.info("%s: using %s after %d failed backend(s)", kind, name, i)
        return device
    raise DeviceUnavailable(f"{kind}: no backend works ({'; '.join(reasons)})")
