"""Where each remote participant goes on screen: grid and active-speaker layouts.

Pure geometry (no drawing), so layouts are checked in tests without pixels. Rectangles are
``(x, y, width, height)`` in screen pixels; video is fitted inside its tile keeping its
aspect ratio (``fit``), so nobody is stretched or cropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Rect = tuple[int, int, int, int]

GRID_MAX = 9                  # beyond 3 x 3 faces get too small to read from the back of a room
FILMSTRIP_MAX = 5
FILMSTRIP_HEIGHT = 0.2        # of the screen height
SELF_VIEW_WIDTH = 0.16        # of the screen width
MARGIN = 0.012                # of the screen height, between tiles and around the self-view


@dataclass(frozen=True)
class Tile:
    participant_id: str       # "" for the self-view
    rect: Rect
    is_main: bool = False


def choose(layout: str, count: int, active: str | None) -> str:
    """The layout to use: "grid" or "speaker". "auto" is full screen for one participant,
    a grid up to GRID_MAX and the active speaker with a filmstrip beyond."""
    if layout in ("grid", "speaker"):
        return layout
    return "grid" if 2 <= count <= GRID_MAX else "speaker"


def arrange(layout: str, participants: list[str], active: str | None, size: tuple[int, int],
            has_self_view: bool) -> list[Tile]:
    """Tiles for ``participants`` (in join order) and the self-view, on a screen of ``size``."""
    if choose(layout, len(participants), active) == "grid":
        tiles = _grid(participants, size)
    else:
        tiles = _speaker(participants, active, size)
    if has_self_view:
        tiles.append(Tile("", self_view_rect(size)))
    return tiles


def _grid(participants: list[str], size: tuple[int, int]) -> list[Tile]:
    width, height = size
    shown = participants[:GRID_MAX]
    if not shown:
        return []
    columns = math.ceil(math.sqrt(len(shown)))
    rows = math.ceil(len(shown) / columns)
    cell_w, cell_h = width // columns, height // rows
    tiles = []
    for index, pid in enumerate(shown):
        row, column = divmod(index, columns)
        # Centre a short last row, so three people on a 2 x 2 grid look deliberate.
        in_row = min(columns, len(shown) - row * columns)
        x0 = (width - in_row * cell_w) // 2
        tiles.append(Tile(pid, (x0 + column * cell_w, row * cell_h, cell_w, cell_h)))
    return tiles


def _speaker(participants: list[str], active: str | None, size: tuple[int, int]) -> list[Tile]:
    width, height = size
    if not participants:
        return []
    main = active if active in participants else participants[0]
    tiles = [Tile(main, (0, 0, width, height), is_main=True)]
    others = [p for p in participants if p != main][:FILMSTRIP_MAX]
    if others:
        strip_h = round(height * FILMSTRIP_HEIGHT)
        strip_w = strip_h * 16 // 9
        gap = round(height * MARGIN)
        y = height - strip_h - bar_height(height) - gap
        for index, pid in enumerate(others):
            tiles.append(Tile(pid, (gap + index * (strip_w + gap), y, strip_w, strip_h)))
    return tiles


def self_view_rect(size: tuple[int, int]) -> Rect:
    """Top-right corner: the room sees itself without covering the speaker's face."""
    width, height = size
    w = round(width * SELF_VIEW_WIDTH) // 2 * 2
    h = w * 9 // 16 // 2 * 2
    gap = round(height * MARGIN)
    return (width - w - gap, gap, w, h)


def fit(source: tuple[int, int], rect: Rect) -> Rect:
    """The largest rectangle of ``source``'s aspect ratio centred in ``rect`` (even sizes,
    as 4:2:0 video scales cleanly to them)."""
    src_w, src_h = source
    x, y, w, h = rect
    scale = min(w / src_w, h / src_h)
    out_w = max(2, int(src_w * scale) // 2 * 2)
    out_h = max(2, int(src_h * scale) // 2 * 2)
    return (x + (w - out_w) // 2, y + (h - out_h) // 2, out_w, out_h)


def bar_height(height: int) -> int:
    """The in-call status bar along the bottom edge (time, quality, mute)."""
    return round(height * 0.085)
