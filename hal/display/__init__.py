"""Displays: the room's TV. A canvas to draw a frame on, and ``present()`` to show it.

The currency is a ``pygame.Surface`` (SDL2): the SDL backends hand out the screen's own
surface, so a composed frame is never copied on its way to HDMI.

A backend provides:
- ``__init__(profile)`` that opens the output (blocking) or raises DeviceUnavailable;
- ``canvas() -> pygame.Surface`` of ``size`` (32-bit), drawn on by the caller;
- ``_present()`` that shows the canvas (blocking);
- ``_close()``.
Defaults: ``poll()`` does nothing (SDL backends drain the window system's events there).

Thread rule (SDL's): open, draw, present and close a display from one thread, the room
screen's render thread; never from the event loop.
"""
from __future__ import annotations

import os
import time
from typing import Any

from hal.device import Device
from hal.profile import DisplayProfile
from hal.registry import open_backend

# pygame prints a greeting on import unless told not to; the journal does not want it.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

DEFAULT_SIZE = (1920, 1080)


class Display(Device):
    """A full-screen output of ``size`` pixels (width, height)."""

    kind = "display"

    def __init__(self, profile: DisplayProfile) -> None:
        super().__init__()
        self.profile = profile
        self.size: tuple[int, int] = (profile.width, profile.height) if profile.width else DEFAULT_SIZE
        self.frames_presented = 0
        self._last_present_s: float | None = None

    def canvas(self):
        """The surface to draw the next frame on (``pygame.Surface`` of ``size``)."""
        raise NotImplementedError

    def present(self) -> None:
        """Show what was drawn on the canvas. Blocking; from the render thread only."""
        self._check_open()
        self._present()
        self.frames_presented += 1
        self._last_present_s = time.monotonic()

    def _present(self) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        """Let the window system breathe (SDL needs its event queue drained)."""

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(width=self.size[0], height=self.size[1], frames=self.frames_presented,
                      last_present_age_s=(round(time.monotonic() - self._last_present_s, 1)
                                          if self._last_present_s is not None else None))
        return status


def open_display(profile: DisplayProfile) -> Display:
    """Open the profile's display (blocking; call it in the thread that will draw on it).

    ``ROOMBOX_DISPLAY_BACKEND`` overrides the profile. Raises DeviceUnavailable with the
    backend's reason.
    """
    return open_backend("display", profile.backend, lambda cls: cls(profile))
