"""Proof a real browser sees and hears the box: headless Chromium (Debian ``chromium``)
joins the same Janus room on loopback with its fake camera and microphone, subscribes to
the box, and reports getStats(); the box shows Chromium's video and plays its audio."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from terminal.app import MeetingSettings
from terminal.state import State
from tests import browser
from tests.terminal.conftest import meeting_url, press, running_terminal
from tests.terminal.meeting_peer import until

pytestmark = pytest.mark.timeout(90)
PAGES = Path(__file__).parent / "pages"
# From ../shared/janus-loopback/README.md: Chromium must be allowed loopback candidates and
# must not hide them behind mDNS names; fake devices stand in for a camera and microphone.
MEETING_FLAGS = ["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required"]
WAIT_S = 20.0


async def _stats_until(page, predicate, timeout_s: float = WAIT_S) -> dict:
    """Chromium's getStats() figures once ``predicate`` holds for them."""
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate(stats := await page.evaluate("participant.stats()")):
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"chromium's stats never got there: {stats}") from None
    return stats


@contextlib.contextmanager
def page_server():
    handler = functools.partial(_Quiet, directory=str(PAGES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


async def test_headless_chromium_sees_and_hears_the_box_and_the_box_hears_it(room, monkeypatch):
    if browser.chromium_binary() is None:
        pytest.fail("chromium is not installed (Debian 'chromium', listed in deps/apt.txt)")
    monkeypatch.setattr(browser, "FLAGS", browser.FLAGS + MEETING_FLAGS)
    janus_url, number = room
    async with running_terminal(MeetingSettings(meeting_url=meeting_url(janus_url, number))) as terminal:
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IN_CALL, WAIT_S, "in_call")
        ours = terminal.session.conference.publisher_id
        with page_server() as pages:
            async with browser.Browser(640, 480) as page:
                await page.goto(f"{pages}/janus_participant.html")
                assert await page.evaluate(f"participant.join('{janus_url}', {number}, {ours})")
                await page.wait_for("participant.sub.connectionState === 'connected'", WAIT_S)
                stats = await _stats_until(page, lambda s: s["video"].get("framesDecoded", 0) >= 60
                                           and s["audio"].get("totalAudioEnergy", 0) > 0.01)
                # Our 320x240 camera, and our microphone's tone well above silence (Chromium's
                # audioLevel comes from coarse level buckets, not a precise peak).
                assert stats["video"]["frameWidth"] == terminal.session.encoder.rung.width == 320
                assert stats["audio"]["audioLevel"] > 0.05, stats["audio"]
                # The box hears Chromium's fake microphone (a periodic beep) and shows its video.
                speaker = terminal.session.mixer.speaker
                await until(lambda: np.abs(speaker.played()[-48000:]).max() > 1000, WAIT_S,
                            "chromium's audio on our speaker")
                chromium = next(p for p, r in terminal.session.remote.items() if r.display == "chromium")
                assert await page.evaluate("participant.canSendH264"), "this Chromium cannot send H.264"
                await until(lambda: terminal.sink.frames.get(chromium, 0) >= 10, WAIT_S,
                            "chromium's video on our screen sink")
                assert not await page.evaluate("participant.errors")
