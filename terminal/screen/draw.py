"""Drawing primitives of the room screen: text sized as a share of screen height, panels,
the QR code, the microphone and network-quality icons.

Sizes are fractions of the screen height so 720p and 1080p look the same from the back of
the room; the main line of every screen is at least MAIN_TEXT of the height (readable
from 4 m on a 55" TV).
"""
from __future__ import annotations

import functools

import numpy as np
import pygame
import segno

from terminal.screen.fonts import Fonts
from terminal.screen.layout import Rect

MAIN_TEXT = 0.06          # the line that matters on each screen
TEXT = 0.04
SMALL_TEXT = 0.03         # nothing anyone must read is smaller than this

BACKGROUND = (13, 22, 38)
PANEL = (28, 41, 64)
WHITE = (242, 245, 250)
GREY = (150, 164, 186)
ACCENT = (78, 160, 255)
GREEN = (46, 204, 113)
AMBER = (245, 166, 35)
RED = (226, 48, 48)
BLACK = (0, 0, 0)
QR_QUIET_MODULES = 4      # the quiet zone scanners need around the symbol


class Painter:
    """Draws on one canvas (a pygame Surface) with the room screen's fonts and sizes."""

    def __init__(self, canvas: pygame.Surface, fonts: Fonts) -> None:
        self.canvas = canvas
        self.fonts = fonts
        self.width, self.height = canvas.get_size()

    def px(self, fraction: float) -> int:
        """A length given as a fraction of the screen height, in pixels."""
        return max(1, round(self.height * fraction))

    def clear(self, colour=BACKGROUND) -> None:
        self.canvas.fill(colour)

    def text(self, words: str, x: int, y: int, size: float, colour=WHITE, *, weight: str = "regular",
             anchor: str = "topleft", max_width: int | None = None) -> Rect:
        """Draw ``words`` with its font size ``size`` x screen height; ``anchor`` names the
        point of the line box placed at (x, y). A line wider than ``max_width`` is shrunk
        to fit, down to SMALL_TEXT, then cut with an ellipsis. Returns the drawn rectangle."""
        font = self.fonts.get(weight)
        pixels = self.px(size)
        if max_width:
            pixels, words = self._fit(font, words, pixels, max_width)
        line = font.get_rect(words, size=pixels)
        # Place by the font's line box, not the ink, so lines with and without descenders
        # or accents sit on the same baseline.
        ascender, descender = font.get_sized_ascender(pixels), font.get_sized_descender(pixels)
        box = pygame.Rect(0, 0, line.width, ascender - descender)
        setattr(box, anchor, (x, y))
        dest = (box.x, box.y + ascender - line.y)
        drawn = font.render_to(self.canvas, dest, words, colour, size=pixels)
        return (drawn.x, drawn.y, drawn.width, drawn.height)

    def _fit(self, font, words: str, pixels: int, max_width: int) -> tuple[int, str]:
        floor = self.px(SMALL_TEXT)
        while pixels > floor and font.get_rect(words, size=pixels).width > max_width:
            pixels = max(floor, int(pixels * 0.92))
        while len(words) > 1 and font.get_rect(words, size=pixels).width > max_width:
            # Three dots, not U+2026: the CJK font draws that centred, as Chinese wants.
            words = words[:-4].rstrip() + "..." if len(words) > 4 else words[:-1]
        return pixels, words

    def panel(self, rect: Rect, colour=PANEL, alpha: int = 255, radius: float = 0.015) -> None:
        """A rounded rectangle, translucent when ``alpha`` < 255 (drawn over video)."""
        x, y, w, h = rect
        if alpha >= 255:
            pygame.draw.rect(self.canvas, colour, rect, border_radius=self.px(radius))
            return
        layer = pygame.Surface((w, h), pygame.SRCALPHA)
        pygame.draw.rect(layer, (*colour, alpha), (0, 0, w, h), border_radius=self.px(radius))
        self.canvas.blit(layer, (x, y))

    def qr(self, data: str, rect: Rect) -> Rect:
        """A QR code of ``data``, black on white with its quiet zone, as large as fits in
        ``rect`` at a whole number of pixels per module (fractional modules blur scans)."""
        surface = _qr_surface(data, min(rect[2], rect[3]))
        side = surface.get_width()
        x = rect[0] + (rect[2] - side) // 2
        y = rect[1] + (rect[3] - side) // 2
        self.canvas.blit(surface, (x, y))
        return (x, y, side, side)

    def microphone(self, centre: tuple[int, int], size: int, colour, *, crossed: bool) -> None:
        """A microphone pictogram ``size`` pixels tall; ``crossed`` strikes it through."""
        cx, cy = centre
        unit = size / 10
        body = pygame.Rect(0, 0, round(unit * 4), round(unit * 6))
        body.midtop = (cx, round(cy - unit * 5))
        pygame.draw.rect(self.canvas, colour, body, border_radius=body.width // 2)
        cradle = pygame.Rect(0, 0, round(unit * 6.4), round(unit * 6.4))
        cradle.center = (cx, round(cy - unit * 0.8))
        pygame.draw.arc(self.canvas, colour, cradle, np.pi, 2 * np.pi, max(2, round(unit * 0.8)))
        pygame.draw.line(self.canvas, colour, (cx, round(cy + unit * 2.4)), (cx, round(cy + unit * 4.2)),
                         max(2, round(unit * 0.8)))
        pygame.draw.line(self.canvas, colour, (round(cx - unit * 2), round(cy + unit * 4.4)),
                         (round(cx + unit * 2), round(cy + unit * 4.4)), max(2, round(unit * 0.8)))
        if crossed:
            pygame.draw.line(self.canvas, colour, (round(cx - unit * 4), round(cy - unit * 5)),
                             (round(cx + unit * 4), round(cy + unit * 4.5)), max(3, round(unit * 1.1)))

    def signal_bars(self, rect: Rect, level: int, colour) -> None:
        """Three rising bars, ``level`` of them lit (0-3)."""
        x, y, w, h = rect
        bar_w = w // 4
        gap = (w - 3 * bar_w) // 2
        for index in range(3):
            bar_h = h * (index + 1) // 3
            bar = (x + index * (bar_w + gap), y + h - bar_h, bar_w, bar_h)
            pygame.draw.rect(self.canvas, colour if index < level else GREY, bar,
                             border_radius=max(1, bar_w // 4))

    def outline(self, rect: Rect, colour, width: int) -> None:
        pygame.draw.rect(self.canvas, colour, rect, width)

    def dot(self, centre: tuple[int, int], radius: int, colour) -> None:
        pygame.draw.circle(self.canvas, colour, centre, radius)

    def warning_sign(self, centre: tuple[int, int], size: int) -> None:
        """An amber triangle with an exclamation mark."""
        cx, cy = centre
        half = size // 2
        pygame.draw.polygon(self.canvas, AMBER, [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)])
        stroke = max(3, size // 10)
        pygame.draw.line(self.canvas, BACKGROUND, (cx, cy - half // 3), (cx, cy + half // 3), stroke)
        pygame.draw.circle(self.canvas, BACKGROUND, (cx, cy + half * 2 // 3), stroke * 2 // 3)


@functools.lru_cache(maxsize=4)
def _qr_surface(data: str, max_side: int) -> pygame.Surface:
    # Cached: the activation page redraws every second for its clock, the code rarely changes.
    code = segno.make(data, error="m", micro=False)
    modules = np.array(list(code.matrix_iter(scale=1, border=QR_QUIET_MODULES)), dtype=bool)
    scale = max(1, max_side // modules.shape[0])
    image = np.where(np.kron(modules, np.ones((scale, scale), dtype=bool)), 0, 255).astype(np.uint8)
    return pygame.surfarray.make_surface(np.repeat(image.T[:, :, None], 3, axis=2))
