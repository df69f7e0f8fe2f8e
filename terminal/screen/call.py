"""The in-call page: remote video in the chosen layout, names, the self-view, and a status
bar with the meeting, call time, network quality and the mute indicator.

The mute indicator is drawn from the same ``muted`` flag that drives the mute LED, so the
screen and the LED never disagree.
"""
from __future__ import annotations

from terminal.screen.compositor import Compositor, Placed
from terminal.screen.draw import ACCENT, AMBER, BLACK, GREEN, GREY, MAIN_TEXT, RED, SMALL_TEXT, WHITE, Painter
from terminal.screen.layout import arrange, bar_height, choose
from terminal.screen.model import ScreenModel, format_duration
from terminal.screen.screens import Regions

QUALITY_LEVEL = {"good": (3, GREEN), "fair": (2, AMBER), "poor": (1, RED), "unknown": (0, GREY)}
NAME_TEXT = 0.032
OVERLAY_ALPHA = 170
GUTTER = 0.002            # of the screen height, each side of a grid tile


def draw_in_call(p: Painter, m: ScreenModel, compositor: Compositor) -> tuple[Regions, list[Placed]]:
    """Compose the call onto the canvas; returns the regions drawn and where video went."""
    p.clear(BLACK)
    roster, active, has_self_view = compositor.roster()
    ids = [pid for pid, _ in roster]
    tiles = arrange(m.layout, ids, active, (p.width, p.height), has_self_view)
    placed = compositor.compose(p.canvas, tiles)
    regions: Regions = {}
    if not ids:
        regions["main"] = p.text(m.t("waiting_for_others"), p.width // 2, p.height * 45 // 100, MAIN_TEXT,
                                 anchor="center", max_width=p.width * 3 // 5)
    is_grid = choose(m.layout, len(ids), active) == "grid"
    for tile in placed:
        if is_grid and tile.participant_id:
            p.outline(tile.rect, BLACK, p.px(GUTTER))    # a seam between neighbours' videos
        if is_grid and tile.participant_id and tile.participant_id == active and len(ids) > 1:
            p.outline(tile.rect, ACCENT, p.px(0.008))   # who is talking, in a grid
        name = tile.name if tile.participant_id else m.t("you")
        regions[f"name:{tile.participant_id or 'self'}"] = _name_label(p, tile, name)
    regions.update(_status_bar(p, m))
    return regions, placed


def _name_label(p: Painter, tile: Placed, name: str):
    x, y, w, h = tile.rect
    pad = p.px(0.012)
    # Small tiles (filmstrip, self-view) get smaller names; the main tiles keep >= 3 %.
    size = NAME_TEXT if h > p.height // 4 else SMALL_TEXT * 0.8
    font_px = p.px(size)
    label_h = font_px + 2 * pad
    width = min(w - 2 * pad, p.fonts.get().get_rect(name, size=font_px).width + 2 * pad)
    if tile.is_main:
        # The full-screen speaker's name goes top left, clear of the filmstrip.
        box = (x + pad * 2, y + pad * 2, width, label_h)
    else:
        bottom = min(y + h, p.height - bar_height(p.height))   # bottom-row names sit above the bar
        box = (x + pad, bottom - label_h - pad, width, label_h)
    p.panel(box, BLACK, alpha=OVERLAY_ALPHA, radius=0.008)
    return p.text(name, box[0] + pad, box[1] + label_h // 2, size, WHITE, anchor="midleft",
                  max_width=width - 2 * pad)


def _status_bar(p: Painter, m: ScreenModel) -> Regions:
    height = bar_height(p.height)
    top = p.height - height
    p.panel((0, top, p.width, height), BLACK, alpha=OVERLAY_ALPHA, radius=0)
    pad = p.px(0.03)
    mid = top + height // 2
    regions: Regions = {}
    duration = format_duration(m.call_duration_s) if m.call_duration_s is not None else ""
    regions["duration"] = p.text(duration, pad, mid, 0.04, WHITE, weight="bold", anchor="midleft")
    title_x = regions["duration"][0] + regions["duration"][2] + pad
    # The mute indicator: a red pill with a struck microphone when muted, a quiet
    # white microphone when live. Fixed place (bar centre), so it is found at a glance.
    pill_w, pill_h = p.px(0.26), height - p.px(0.02)
    pill = (p.width // 2 - pill_w // 2, mid - pill_h // 2, pill_w, pill_h)
    regions["mute"] = pill
    if m.is_muted:
        p.panel(pill, RED, radius=0.03)
        p.microphone((pill[0] + pill_h * 3 // 4, mid), pill_h * 3 // 4, WHITE, crossed=True)
        p.text(m.t("muted"), pill[0] + pill_h * 3 // 2, mid, 0.04, WHITE, weight="bold", anchor="midleft",
               max_width=pill_w - pill_h * 2)
    else:
        p.microphone((p.width // 2, mid), pill_h * 3 // 4, WHITE, crossed=False)
    if m.meeting_title:
        regions["meeting"] = p.text(m.meeting_title, title_x, mid, SMALL_TEXT, GREY, anchor="midleft",
                                    max_width=pill[0] - title_x - pad)
    level, colour = QUALITY_LEVEL.get(m.quality, QUALITY_LEVEL["unknown"])
    bars_w, bars_h = p.px(0.05), p.px(0.04)
    bars = (p.width - pad - bars_w, mid - bars_h // 2, bars_w, bars_h)
    p.signal_bars(bars, level, colour)
    regions["quality"] = bars
    regions["quality_text"] = p.text(m.t(f"quality_{m.quality}"), bars[0] - p.px(0.02), mid, SMALL_TEXT, colour,
                                     anchor="midright")
    return regions
