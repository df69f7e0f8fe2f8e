"""Every page of the room screen rendered from a known state on the offscreen display and
read back: text by OCR and ink, the QR code by a real decoder, the mute indicator's pixels,
and the main line's height (readable from 4 m: at least 3 % of the screen height)."""
from __future__ import annotations

import re

import numpy as np
import pytest
from pyzbar import pyzbar

from hal.display import open_display
from hal.profile import DisplayProfile
from terminal.screen import samples
from terminal.screen.draw import BACKGROUND, RED
from tests.terminal.screen.helpers import crop, ink_fraction, ocr

MIN_MAIN_TEXT = 0.03


@pytest.mark.parametrize("name", list(samples.SAMPLES))
def test_every_page_has_a_main_line_big_enough_to_read_across_the_room(name, display, fonts):
    regions, _, _ = samples.render_sample(name, display, fonts)
    image = display.snapshot()
    main = regions.get("main") or regions["duration"]
    assert main[3] >= MIN_MAIN_TEXT * image.shape[0], f"{name}: main line {main[3]} px tall"
    if name.startswith("in-call") and name != "in-call-waiting":
        return
    assert ink_fraction(image, main) > 0.08, f"{name}: main line region is empty"


@pytest.mark.parametrize("name, region, expected", [
    ("idle", "main", "press the button to join"),
    ("idle", "room", "kilimanjaro"),
    ("idle-nothing-to-join", "main", "no meeting to join right now"),
    ("idle", "meeting0", "weekly sync with the nairobi office"),
    ("idle-upcoming", "upcoming", "starts in 8 min"),
    ("unprovisioned", "code", "wdjb-mjht"),
    ("unprovisioned", "serial", "rbx-5d2a-0191"),
    ("joining", "main", "joining the meeting"),
    ("leaving", "main", "leaving the meeting"),
    ("degraded", "main", "the camera is not working"),
    ("degraded", "advice", "check the camera cable"),
    ("technician", "main", "technician view"),
    ("in-call-speaker", "name:p3", "jonas weber"),
    ("in-call-waiting", "main", "waiting for others to join"),
])
def test_pages_say_what_they_should(name, region, expected, display, fonts, tmp_path):
    regions, _, _ = samples.render_sample(name, display, fonts)
    read = ocr(display.snapshot(), regions[region], tmp_path)
    # OCR's word spacing and stray punctuation vary; the letters must all be there in order.
    assert _letters(expected) in _letters(read), f"{name}.{region}: read {read!r}"


def _letters(words: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", words)


@pytest.mark.parametrize("name", ["unprovisioned", "unprovisioned-zh"])
def test_activation_qr_code_decodes_to_the_verification_url(name, display, fonts):
    regions, _, _ = samples.render_sample(name, display, fonts)
    image = np.ascontiguousarray(crop(display.snapshot(), regions["qr"]))
    gray = image.mean(axis=2).astype(np.uint8)
    decoded = pyzbar.decode((gray.tobytes(), gray.shape[1], gray.shape[0]))
    assert [d.data.decode() for d in decoded] == [samples.VERIFICATION_URL]


def test_qr_code_still_decodes_at_720p(fonts):
    with open_display(DisplayProfile(backend="offscreen", width=1280, height=720)) as small:
        regions, _, _ = samples.render_sample("unprovisioned", small, fonts)
        gray = np.ascontiguousarray(crop(small.snapshot(), regions["qr"]).mean(axis=2).astype(np.uint8))
    assert [d.data.decode() for d in pyzbar.decode((gray.tobytes(), gray.shape[1], gray.shape[0]))] \
        == [samples.VERIFICATION_URL]


def red_share(image, rect) -> float:
    area = crop(image, rect).astype(int)
    return float((np.abs(area - np.array(RED)).sum(axis=2) < 40).mean())


def test_mute_indicator_follows_the_mute_state(display, fonts):
    shares = {}
    for muted in (False, True, False):
        status, options = samples.SAMPLES["in-call-grid"]
        samples.SAMPLES["mute-probe"] = ({**status, "muted": muted}, options)
        try:
            regions, _, model = samples.render_sample("mute-probe", display, fonts)
        finally:
            del samples.SAMPLES["mute-probe"]
        assert model.is_muted is muted
        shares.setdefault(muted, []).append(red_share(display.snapshot(), regions["mute"]))
    assert min(shares[True]) > 0.4           # a red pill
    assert max(shares[False]) < 0.02         # no red at all while the microphone is live


def test_chinese_pages_render_chinese_glyphs_not_boxes(display, fonts):
    assert fonts.has_cjk, "Noto Sans CJK missing: deps/apt.txt lists fonts-noto-cjk"
    regions, _, model = samples.render_sample("degraded-zh", display, fonts)
    assert model.problem == "摄像头无法工作。"
    # Distinct characters give distinct glyph images; missing glyphs would all be the same box.
    font = fonts.get()
    glyphs = {font.render_raw(ch, size=40)[0] for ch in "摄像头无法工作"}
    assert len(glyphs) == 7
    assert ink_fraction(display.snapshot(), regions["main"]) > 0.1


def test_missing_cjk_font_falls_back_with_a_clear_log_line(monkeypatch, caplog):
    from terminal.screen import fonts as fonts_module
    monkeypatch.setattr(fonts_module, "CJK_DIRS", ("/nonexistent",))
    with caplog.at_level("WARNING", logger="roombox.screen"):
        fallback = fonts_module.Fonts()
    assert not fallback.has_cjk
    assert "install fonts-noto-cjk" in caplog.text
    assert fallback.get().get_rect("Room", size=40).width > 0


def test_pages_at_720p_keep_the_main_line_readable(fonts):
    with open_display(DisplayProfile(backend="offscreen", width=1280, height=720)) as small:
        for name in ("idle", "unprovisioned", "degraded", "joining"):
            regions, _, _ = samples.render_sample(name, small, fonts)
            assert regions["main"][3] >= MIN_MAIN_TEXT * 720
            x, y, w, h = regions["main"]
            assert x >= 0 and y >= 0 and x + w <= 1280 and y + h <= 720
            assert tuple(small.snapshot()[2, 2]) == BACKGROUND


def test_long_names_shrink_then_end_with_dots_and_stay_on_screen(display, fonts):
    from terminal.screen.model import build
    from terminal.screen.renderer import render
    long_name = "The Very Long Name of the Big Boardroom on the Seventh Floor, East Wing, Next to the Kitchen"
    status = {**samples.SAMPLES["idle"][0], "room": {"name": long_name}}
    regions, _ = render(display.canvas(), fonts, build(status, samples.NOW))
    x, y, w, h = regions["room"]
    assert w <= 1920 * 3 // 5                             # the idle page's room-name column
    assert MIN_MAIN_TEXT * 1080 * 0.8 <= h < 0.065 * 1080  # shrunk, but no smaller than small text


def test_activation_page_without_a_url_shows_the_code_and_no_qr(display, fonts):
    from terminal.screen.model import build
    from terminal.screen.renderer import render
    status = {"state": "unprovisioned", "provisioning": {"activation_code": "ABCD-1234"}}
    regions, _ = render(display.canvas(), fonts, build(status, samples.NOW))
    display.present()
    assert "qr" not in regions
    assert ink_fraction(display.snapshot(), regions["code"], background=(28, 41, 64)) > 0.1


def test_idle_without_a_calendar_lists_no_meetings(display, fonts):
    from terminal.screen.model import build
    from terminal.screen.renderer import render
    regions, _ = render(display.canvas(), fonts, build({"state": "idle", "room": {"name": "Lab"}}, samples.NOW))
    assert "main" in regions and "agenda_title" not in regions
