"""The room screen wired to a running terminal (offscreen display): it follows the state
machine, shows the unprovisioned box's serial and reason, the mute indicator follows the
mute button, and holding mute opens the technician view."""
from __future__ import annotations

import asyncio
import dataclasses
import time

from hal.profile import DisplayProfile
from media.video import VideoConfig
from terminal.app import MeetingSettings, Terminal
from terminal.screen import RoomScreen
from tests.terminal.conftest import box_profile

WAIT_S = 15.0
HOLD_S = 0.6


def screen_profile():
    profile = box_profile()
    mute = dataclasses.replace(profile.buttons.mute, hold_s=HOLD_S)
    return dataclasses.replace(profile, buttons=dataclasses.replace(profile.buttons, mute=mute),
                               display=DisplayProfile(backend="offscreen", width=1280, height=720, fps=10))


async def until_model(screen: RoomScreen, predicate, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        model = screen.last_model
        if model is not None and predicate(model):
            return model
        await asyncio.sleep(0.05)
    raise AssertionError(f"screen never showed {what}; last model: {screen.last_model}")


async def test_screen_follows_the_terminal_from_unprovisioned_to_idle_and_mute(tmp_path):
    profile = screen_profile()
    async with RoomScreen(profile.display) as screen:
        terminal = Terminal(profile, MeetingSettings(display_name="Lovelace"), sink=screen.sink, screen=screen)
        terminal.enable_provisioning(state_dir=tmp_path / "state", seed_dirs=(), use_dns_sd=False)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            task = group.create_task(terminal.run(stop))
            try:
                model = await until_model(screen, lambda m: m.screen == "unprovisioned" and m.is_online is not None,
                                          "unprovisioned, with the network state")
                assert model.serial == terminal.board_info["serial"]
                assert model.is_online == terminal.network["online"], "the network state the box reads"

                # Provisioning applies a configuration: the screen turns to the idle page.
                terminal.apply_settings(MeetingSettings(meeting_url="janus+http://127.0.0.1:1/janus?room=1",
                                                        display_name="Lovelace"), "test configuration")
                model = await until_model(screen, lambda m: m.screen == "idle", "idle")
                assert model.room_name == "Lovelace" and not model.is_muted

                pin = terminal.buttons.device("mute").pin
                pin.drive_low()
                pin.drive_high()
                await until_model(screen, lambda m: m.is_muted, "the mute indicator")
                assert terminal.leds.is_mute_lit, "screen and mute LED agree"

                pin.drive_low()                      # held: the technician view opens
                await until_model(screen, lambda m: m.screen == "technician", "the technician view")
                pin.drive_high()
                model = screen.last_model
                assert any(line.label for line in model.health), "the technician view lists health lines"
            finally:
                stop.set()
                async with asyncio.timeout(WAIT_S):
                    await asyncio.wait([task])


async def test_in_call_screen_shows_the_remote_participant_and_the_self_view(room):
    from tests.terminal.conftest import meeting_url, press
    from tests.terminal.meeting_peer import RemotePeer, until
    janus_url, number = room
    profile = screen_profile()
    settings = MeetingSettings(meeting_url=meeting_url(janus_url, number), display_name="Lovelace",
                               video=VideoConfig(encoder="libx264"))
    async with RemotePeer(janus_url, number, "alice", tone_hz=440) as alice:
        async with RoomScreen(profile.display) as screen:
            terminal = Terminal(profile, settings, sink=screen.sink, screen=screen)
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as group:
                task = group.create_task(terminal.run(stop))
                try:
                    await until(lambda: terminal.machine.state == "idle", WAIT_S, "idle")
                    await press(terminal, "join")
                    await until(lambda: terminal.machine.state == "in_call", WAIT_S, "in_call")

                    def tiles() -> dict[str, object]:
                        return {p.participant_id: p for p in screen.last_placed if p.video_rect is not None}
                    await until(lambda: str(alice.feed_id) in tiles() and "" in tiles(), WAIT_S,
                                "alice's video and our self-view on the screen")
                    assert tiles()[str(alice.feed_id)].name == "alice"
                    assert screen.last_model.screen == "in_call" and screen.last_model.call_duration_s is not None
                    await press(terminal, "join")
                    await until(lambda: terminal.machine.state == "idle", WAIT_S, "idle after leaving")
                    await until_model(screen, lambda m: m.screen == "idle", "the idle page after the call")
                    roster, _, has_self_view = screen.sink.roster()
                    assert not roster and not has_self_view, "the call's tiles and the self-view are gone"
                finally:
                    stop.set()
                    async with asyncio.timeout(WAIT_S):
                        await asyncio.wait([task])
