"""Meeting fixtures: a real Janus on loopback (tests/janus.py), a fresh VideoRoom per test,
a small simulated box, and a Terminal running for the test's duration."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os

import pytest

from hal.profile import load_profile
from media.video import VideoConfig
from terminal.app import MeetingSettings, Terminal
from terminal.screen_sink import RecordingSink
from tests.janus import in_janus_netns, janus, loopback_ice  # noqa: F401  (fixtures)
from tests.terminal.meeting_peer import SMALL_CAMERA, create_room

IDLE_TIMEOUT_S = 10.0
_rooms = itertools.count(int.from_bytes(os.urandom(2), "big") * 100 + 1000)


@pytest.fixture
async def room(in_janus_netns):
    """(janus HTTP URL, room number) of a new H.264/Opus room."""
    number = next(_rooms)
    await create_room(in_janus_netns.url, number)
    return in_janus_netns.url, number


def box_profile(mic_source: str = "tone"):
    """The sim profile with a small camera (fast on 2 shared cores) and a 1 kHz mic tone."""
    profile = load_profile("sim")
    return dataclasses.replace(
        profile, camera=dataclasses.replace(profile.camera, **SMALL_CAMERA),
        microphone=dataclasses.replace(profile.microphone, source=mic_source))


def meeting_url(janus_url: str, room: int, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"room": room, **params}.items())
    return janus_url.replace("http://", "janus+http://") + "?" + query


@contextlib.asynccontextmanager
async def running_terminal(settings: MeetingSettings, profile=None):
    """A Terminal on the small sim profile, at idle; stopped (and awaited) afterwards."""
    sink = RecordingSink()
    if settings.video is None:
        settings = dataclasses.replace(settings, video=VideoConfig(encoder="libx264"))
    terminal = Terminal(profile or box_profile(), settings, sink)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        task = group.create_task(terminal.run(stop))
        try:
            async with asyncio.timeout(IDLE_TIMEOUT_S):
                await terminal.reached_idle.wait()
            yield terminal
        finally:
            stop.set()
            async with asyncio.timeout(20):
                await asyncio.wait([task])


async def press(terminal: Terminal, button: str) -> None:
    pin = terminal.buttons.device(button).pin
    pin.drive_low()
    pin.drive_high()
