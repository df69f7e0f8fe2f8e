"""Layouts: where each participant's video goes, as pure geometry."""
from __future__ import annotations

from terminal.screen.layout import arrange, bar_height, choose, fit, self_view_rect

HD = (1920, 1080)


def test_four_participants_fill_the_quadrants_of_a_grid():
    tiles = arrange("grid", ["a", "b", "c", "d"], None, HD, has_self_view=False)
    assert [(t.participant_id, t.rect) for t in tiles] == [
        ("a", (0, 0, 960, 540)), ("b", (960, 0, 960, 540)),
        ("c", (0, 540, 960, 540)), ("d", (960, 540, 960, 540))]


def test_a_short_last_row_is_centred():
    tiles = arrange("grid", ["a", "b", "c"], None, HD, has_self_view=False)
    assert tiles[2].rect == (480, 540, 960, 540)


def test_speaker_layout_shows_the_active_speaker_full_screen_and_others_in_a_filmstrip():
    tiles = arrange("speaker", ["a", "b", "c"], "b", HD, has_self_view=True)
    main, *strip, self_view = tiles
    assert main.participant_id == "b" and main.rect == (0, 0, 1920, 1080) and main.is_main
    assert [t.participant_id for t in strip] == ["a", "c"]
    for tile in strip:
        x, y, w, h = tile.rect
        assert w * 9 == h * 16 and y + h <= 1080 - bar_height(1080)
    assert self_view.participant_id == "" and self_view.rect == self_view_rect(HD)


def test_auto_layout_is_full_screen_for_one_grid_for_several_speaker_for_a_crowd():
    assert choose("auto", 1, None) == "speaker"
    assert choose("auto", 4, None) == "grid"
    assert choose("auto", 12, "x") == "speaker"
    assert choose("grid", 1, None) == "grid"


def test_fit_keeps_the_aspect_ratio_and_centres():
    assert fit((1280, 720), (0, 0, 960, 540)) == (0, 0, 960, 540)
    assert fit((640, 480), (0, 0, 960, 540)) == (120, 0, 720, 540)      # 4:3 pillar-boxed
    assert fit((720, 1280), (100, 0, 960, 540)) == (100 + (960 - 302) // 2, 0, 302, 540)
