"""Offscreen display: frames go to memory, for tests, screenshots and benchmarks.

Needs no video driver at all (a plain ``pygame.Surface``), so it works on CI and on a box
whose HDMI is unplugged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pygame

from hal.display import Display
from hal.profile import DisplayProfile


class OffscreenDisplay(Display):
    """Keeps a copy of the last presented frame: ``snapshot()`` and ``save_png()`` read it."""

    def __init__(self, profile: DisplayProfile) -> None:
        super().__init__(profile)
        self._canvas = pygame.Surface(self.size, 0, 32)
        self._shown: pygame.Surface | None = None

    def canvas(self) -> pygame.Surface:
        return self._canvas

    def _present(self) -> None:
        self._shown = self._canvas.copy()

    def snapshot(self) -> np.ndarray:
        """The last presented frame as an RGB array (height, width, 3) of uint8.

        Raises LookupError if nothing has been presented yet."""
        if self._shown is None:
            raise LookupError("display: offscreen has presented no frame yet")
        return pygame.surfarray.array3d(self._shown).transpose(1, 0, 2).copy()

    def save_png(self, path: str | Path) -> Path:
        """Write the last presented frame to ``path`` as PNG (atomically) and return it."""
        if self._shown is None:
            raise LookupError("display: offscreen has presented no frame yet")
        path = Path(path)
        temporary = path.with_name(f".{path.stem}.tmp.png")
        pygame.image.save(self._shown, str(temporary))
        temporary.replace(path)
        return path

    def _close(self) -> None:
        self._shown = None
