"""The room screen wired to a running terminal (offscreen display): it follows the state
machine, shows the unprovisioned box's serial and reason, the mute indicator follows the
mute button, and holding mute opens the technician view."""
from __future__ import annotations

import asyncio
import dataclasses
import time

from hal.profile import DisplayProfile
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
