"""SDL2 displays through pygame-ce: full screen on HDMI with KMS/DRM, or a desktop window.

KMS/DRM is how Raspberry Pi OS Lite shows video without a desktop: SDL opens the DRM
device (/dev/dri/card*) itself and sets the TV's current mode. The user running roombox
needs the ``video`` group (and ``render`` for GPU-backed paths).
"""
from __future__ import annotations

import logging
import os

import pygame

from hal.display import DEFAULT_SIZE, Display
from hal.errors import DeviceUnavailable
from hal.profile import DisplayProfile

log = logging.getLogger("roombox.hal")


class SdlDisplay(Display):
    """One SDL window; its surface is the canvas, so presenting copies nothing in Python."""

    driver: str | None = None             # SDL_VIDEODRIVER to force, None = SDL's choice
    fullscreen = False

    def __init__(self, profile: DisplayProfile) -> None:
        super().__init__(profile)
        forced = self.driver is not None and "SDL_VIDEODRIVER" not in os.environ
        if forced:
            # Only SDL's own variable selects its video driver; an explicit one (tests) wins.
            os.environ["SDL_VIDEODRIVER"] = self.driver
        try:
            pygame.display.init()
            size = self._mode_size(profile)
            flags = pygame.FULLSCREEN if self.fullscreen else 0
            self._surface = pygame.display.set_mode(size, flags)
        except pygame.error as exc:
            driver = os.environ.get("SDL_VIDEODRIVER", "default")
            pygame.display.quit()
            if forced:
                del os.environ["SDL_VIDEODRIVER"]
            raise DeviceUnavailable(f"display: {self.backend_name} cannot open "
                                    f"(SDL video driver {driver!r}: {exc})") from None
        self.size = self._surface.get_size()
        # Some framebuffers come up 16- or 24-bit; drawing then happens on a 32-bit canvas
        # that present() converts in one blit, so callers always get the same pixel layout.
        self._canvas = self._surface if self._surface.get_bitsize() == 32 else pygame.Surface(self.size, 0, 32)
        pygame.display.set_caption("roombox")
        pygame.mouse.set_visible(False)
        log.info("display: %s open at %dx%d on SDL driver %s", self.backend_name,
                 *self.size, pygame.display.get_driver())

    @property
    def backend_name(self) -> str:
        return type(self).__name__.removesuffix("Display").lower()

    def _mode_size(self, profile: DisplayProfile) -> tuple[int, int]:
        if profile.width:
            return profile.width, profile.height
        return DEFAULT_SIZE

    def canvas(self) -> pygame.Surface:
        return self._canvas

    def _present(self) -> None:
        if self._canvas is not self._surface:
            self._surface.blit(self._canvas, (0, 0))
        pygame.display.flip()

    def poll(self) -> None:
        # Without draining its queue SDL thinks the program hung (and a window manager says so).
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                log.info("display: window closed by the user; the screen keeps rendering")

    def status(self):
        status = super().status()
        status["driver"] = pygame.display.get_driver() if pygame.display.get_init() else None
        return status

    def _close(self) -> None:
        pygame.display.quit()


class KmsDisplay(SdlDisplay):
    """Full screen through SDL2's KMS/DRM driver (Raspberry Pi OS Lite, no desktop)."""

    driver = "kmsdrm"
    fullscreen = True

    def _mode_size(self, profile: DisplayProfile) -> tuple[int, int]:
        if profile.width:
            return profile.width, profile.height
        # The TV's current mode, as the firmware / KMS negotiated it over HDMI (EDID).
        sizes = pygame.display.get_desktop_sizes()
        if not sizes:
            raise pygame.error("no connected display found")
        return sizes[0]


class WindowDisplay(SdlDisplay):
    """A window on a desktop (X11 or Wayland), for development."""
