"""Fonts for the room screen: one family that covers Latin and Simplified Chinese.

Noto Sans CJK (Debian ``fonts-noto-cjk``, listed in deps/apt.txt) covers both scripts, so
a room name mixing them renders in one consistent face. Its .ttc holds several regional
faces; we pick the SC one by name, since Chinese and Japanese forms of a character differ.
If it is missing we fall back to DejaVu, then to pygame's bundled font, and say so once:
Chinese text then shows as boxes, which the log line explains.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame.freetype  # noqa: E402 - after the variable that silences pygame's greeting

log = logging.getLogger("roombox.screen")

CJK_DIRS = ("/usr/share/fonts/opentype/noto", "/usr/share/fonts/truetype/noto")
CJK_FILES = {"regular": "NotoSansCJK-Regular.ttc", "bold": "NotoSansCJK-Bold.ttc"}
CJK_FACE = "Noto Sans CJK SC"
LATIN_FALLBACK = {"regular": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                  "bold": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"}
MAX_TTC_FACES = 16


class Fonts:
    """Regular and bold faces; ``get(weight)`` returns a ``pygame.freetype.Font`` whose size
    is given at render time (``size=`` in pixels). Use from the render thread."""

    def __init__(self) -> None:
        pygame.freetype.init()
        self.has_cjk = False
        self._faces = {weight: self._load(weight) for weight in ("regular", "bold")}

    def get(self, weight: str = "regular") -> pygame.freetype.Font:
        return self._faces[weight]

    def _load(self, weight: str) -> pygame.freetype.Font:
        for directory in CJK_DIRS:
            path = Path(directory) / CJK_FILES[weight]
            if path.is_file():
                font = _face_named(path, CJK_FACE)
                if font is not None:
                    self.has_cjk = True
                    return _configured(font)
        fallback = LATIN_FALLBACK[weight]
        if Path(fallback).is_file():
            log.warning("screen: %s not found in %s (install fonts-noto-cjk); using %s, "
                        "Chinese text will not render", CJK_FILES[weight], ", ".join(CJK_DIRS), fallback)
            return _configured(pygame.freetype.Font(fallback))
        log.warning("screen: neither Noto Sans CJK nor DejaVu Sans is installed "
                    "(install fonts-noto-cjk); using pygame's bundled font, Chinese text will not render")
        return _configured(pygame.freetype.Font(None))


def _face_named(path: Path, name: str) -> pygame.freetype.Font | None:
    for index in range(MAX_TTC_FACES):
        try:
            font = pygame.freetype.Font(str(path), font_index=index)
        except (OSError, pygame.error):
            return None
        if font.name == name:
            return font
    return None


def _configured(font: pygame.freetype.Font) -> pygame.freetype.Font:
    font.antialiased = True
    font.pad = False
    font.origin = False
    return font
