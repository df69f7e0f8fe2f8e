"""RoomScreen: the render thread draws what the status says, takes video through the
sink, and leaves the event loop free while it works."""
from __future__ import annotations

import asyncio
import time

from hal.camera import stamp
from hal.profile import DisplayProfile
from terminal.screen import RoomScreen
from terminal.screen.samples import NOW, SAMPLES, participant_frames
from tests.terminal.screen.helpers import stamp_in

RENDER_TIMEOUT_S = 10.0


async def rendered(screen: RoomScreen, count: int) -> None:
    assert await asyncio.to_thread(screen.wait_rendered, count, RENDER_TIMEOUT_S), "screen did not redraw"


async def test_room_screen_follows_the_status_and_shows_live_video():
    profile = DisplayProfile(backend="offscreen", width=1280, height=720, fps=30)
    async with RoomScreen(profile, clock=lambda: NOW) as screen:
        screen.update(SAMPLES["idle"][0])
        await rendered(screen, 1)
        await rendered(screen, screen.frames_rendered + 1)
        assert "clock" in screen.last_regions and "meeting0" in screen.last_regions

        frames = participant_frames(3)
        screen.sink.update_participant("p1", "Amara", frames[0])
        screen.sink.update_participant("p2", "Jonas", frames[1])
        screen.update(SAMPLES["in-call-grid"][0])
        await rendered(screen, screen.frames_rendered + 2)
        placed = {p.participant_id: p for p in screen.last_placed}
        assert set(placed) == {"p1", "p2"}
        image = screen.display.snapshot()
        assert stamp_in(image, placed["p2"].video_rect) == stamp.read_frame(frames[1])

        screen.sink.update_participant("p2", "Jonas", frames[2])    # the decoder's newest
        await rendered(screen, screen.frames_rendered + 2)
        image = screen.display.snapshot()
        placed = {p.participant_id: p for p in screen.last_placed}
        assert stamp_in(image, placed["p2"].video_rect) == stamp.read_frame(frames[2])

        assert screen.toggle_technician()
        await rendered(screen, screen.frames_rendered + 2)
        assert "health0" in screen.last_regions
        status = screen.status()
        assert status["display"]["backend"] == "offscreen" and status["participants"] == 2
    assert screen.display.is_closed


async def test_rendering_a_call_happens_off_the_event_loop():
    profile = DisplayProfile(backend="offscreen", width=1920, height=1080, fps=30)
    frames = participant_frames(4)
    async with RoomScreen(profile, clock=lambda: NOW) as screen:
        for index, frame in enumerate(frames):
            screen.sink.update_participant(f"p{index}", f"P{index}", frame)
        screen.update(SAMPLES["in-call-grid"][0])
        start = screen.frames_rendered
        handoff_s = []
        deadline = time.monotonic() + RENDER_TIMEOUT_S
        while screen.frames_rendered < start + 15 and time.monotonic() < deadline:
            before = time.perf_counter()
            screen.sink.update_participant("p0", "P0", frames[len(handoff_s) % 4])  # as the decoder does
            handoff_s.append(time.perf_counter() - before)
            await asyncio.sleep(0.005)
        assert screen.frames_rendered >= start + 15
        assert screen.render_thread == "room-screen"
    # Handing a frame over is a reference swap under a lock, even while a frame is being
    # composed (rendering takes ~10 ms; the bound leaves room for a GIL switch on a busy machine).
    assert sorted(handoff_s)[len(handoff_s) // 2] < 0.002


async def test_a_display_that_cannot_open_leaves_the_box_running(monkeypatch):
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.setenv("ROOMBOX_DISPLAY_BACKEND", "no-such-display")
    async with RoomScreen(DisplayProfile(backend="offscreen")) as screen:
        screen.update({"state": "idle"})
    assert "no backend 'no-such-display'" in screen.error
    assert screen.status()["display"] == {"open": False} and screen.status()["error"] == screen.error


async def test_a_drawing_error_is_reported_and_the_screen_keeps_going(caplog, monkeypatch):
    from terminal.screen import renderer

    def broken_page(painter, model):
        raise ZeroDivisionError("a bug in a page")

    monkeypatch.setitem(renderer.PAGES, "degraded", broken_page)
    async with RoomScreen(DisplayProfile(backend="offscreen", width=640, height=360), clock=lambda: NOW) as screen:
        with caplog.at_level("ERROR", logger="roombox.screen"):
            screen.update({"state": "degraded", "reason": "camera: gone"})
            async with asyncio.timeout(RENDER_TIMEOUT_S):
                while screen.error is None:
                    await asyncio.sleep(0.01)
        assert "drawing failed" in caplog.text and screen.status()["error"] == "ZeroDivisionError: a bug in a page"
        drawn = screen.frames_rendered
        screen.update(SAMPLES["idle"][0])
        await rendered(screen, drawn + 1)
        assert "clock" in screen.last_regions and screen.error is None   # recovered


async def test_follow_feeds_the_terminal_status_to_the_screen():
    states = iter(["booting", "idle", "degraded"])
    current = {"state": "booting"}

    def read_status():
        return dict(current)

    async with RoomScreen(DisplayProfile(backend="offscreen", width=640, height=360), clock=lambda: NOW) as screen:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(screen.follow(read_status, every_s=0.01))
            for state in states:
                current["state"] = state
                async with asyncio.timeout(RENDER_TIMEOUT_S):
                    while screen._status.get("state") != state:
                        await asyncio.sleep(0.005)
            task.cancel()
        await rendered(screen, screen.frames_rendered + 1)
    assert "advice" in screen.last_regions          # the degraded page was drawn last


def test_the_compositor_is_the_meetings_frame_sink():
    from terminal.screen_sink import FrameSink
    assert isinstance(RoomScreen(DisplayProfile()).sink, FrameSink)


async def test_the_screen_draws_a_real_terminals_status():
    from hal.profile import load_profile
    from terminal.app import Terminal
    from terminal.state import Event

    profile = load_profile("sim")
    stop = asyncio.Event()
    async with RoomScreen(profile.display, clock=lambda: NOW) as screen:
        terminal = Terminal(profile, sink=screen.sink)
        async with asyncio.TaskGroup() as group:
            group.create_task(terminal.run(stop))
            follower = group.create_task(screen.follow(terminal.status, every_s=0.02))
            await asyncio.wait_for(terminal.reached_idle.wait(), RENDER_TIMEOUT_S)
            async with asyncio.timeout(RENDER_TIMEOUT_S):
                while screen.last_model is None or screen.last_model.screen != "idle":
                    await asyncio.sleep(0.01)
            assert "clock" in screen.last_regions and "main" in screen.last_regions
            terminal.post(Event("device_lost", {"kind": "speaker", "reason": "unplugged"}))
            async with asyncio.timeout(RENDER_TIMEOUT_S):
                while "advice" not in screen.last_regions:          # the degraded page
                    await asyncio.sleep(0.01)
            follower.cancel()
            stop.set()
        assert screen.error is None
        assert screen.last_model.problem == "The speaker is not working."
        assert screen.last_model.serial.startswith("SIM")            # the board's serial, read through
