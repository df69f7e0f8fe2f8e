"""One-button join through a real Janus VideoRoom on loopback, with a real remote
participant (an aiortc peer publishing a stamped pattern and a 440 Hz tone)."""
from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest

from terminal.app import MeetingSettings
from terminal.commands.call import format_status
from terminal.state import State
from tests.terminal.conftest import meeting_url, press, running_terminal
from tests.terminal.meeting_peer import RemotePeer, has_tone, until

pytestmark = pytest.mark.timeout(120)
JOIN_S = 20.0
MEDIA_S = 15.0


async def test_join_button_publishes_h264_and_opus_and_plays_the_room(room):
    janus_url, number = room
    settings = MeetingSettings(meeting_url=meeting_url(janus_url, number))
    async with RemotePeer(janus_url, number, "alice", tone_hz=440) as alice:
        async with running_terminal(settings) as terminal:
            assert terminal.session is None, "no camera before a call"
            sockets_before = _sockets()
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call")
            assert terminal.leds.shown == {"colour": "red", "pattern": "solid"}
            session = terminal.session
            camera = session.encoder.camera
            assert not camera.is_closed
            await alice.watch(await alice.box_feed(JOIN_S))
            # Alice decodes our camera: stamped frames, in capture order.
            await until(lambda: len(alice.stamps) >= 30, MEDIA_S, "alice decoding 30 of our frames")
            counters = [s.counter for s in alice.stamps]
            assert counters == sorted(counters) and len(set(counters)) == len(counters)
            # Alice hears our microphone (the sim mic plays a 1 kHz tone).
            await until(lambda: has_tone(alice.heard(0.2), 1000), MEDIA_S, "alice hearing 1 kHz")
            # We see Alice on the screen sink and hear her tone on our speaker.
            sink = terminal.sink
            await until(lambda: sink.frames.get(str(alice.feed_id), 0) >= 10, MEDIA_S, "alice's video on our sink")
            assert sink.names[str(alice.feed_id)] == "alice"
            await until(lambda: sink.active_speaker == str(alice.feed_id), MEDIA_S, "alice as active speaker")
            speaker = session.mixer.speaker
            await until(lambda: has_tone(speaker.played()[-9600:], 440), MEDIA_S,
                        "alice's 440 Hz tone on our speaker")
            # The status aggregate carries the call's figures (sampled once a second).
            await until(lambda: session.status().get("rx_kbps"), MEDIA_S, "call figures")
            figures = terminal.status()["call_session"]
            assert figures["connected"] and figures["tx_video_kbps"] > 0 and figures["tx_audio_kbps"] > 0
            assert figures["tx_fps"] > 10 and figures["rx_fps"] > 10
            # The microphone goes through the whole audio pipeline, alice's audio as AEC reference.
            processing = figures["microphone"]["processing"]
            assert processing["enabled"] == ["beam", "aec", "ns", "agc"]
            assert processing["aec"]["reference_missing"] < 50
            assert figures["participants"][str(alice.feed_id)]["display"] == "alice"
            shown = format_status(terminal.status())           # what `roombox status` prints
            assert "state:      in_call" in shown and "  alice (" in shown and "kbit/s video" in shown
            assert "video:      libx264 (" in shown, "which encoder and why"
            assert "protection: no parity (no loss seen)" in shown, "the video FEC plan"
            assert "send rate:  aiming at " in shown and "kbit/s (" in shown, "the rate and why"
            assert figures["sending"]["fec"]["parity_packets"] == 0
            # Mute: the LED lights and Alice hears silence; unmute brings the tone back.
            await press(terminal, "mute")
            await until(lambda: terminal.machine.is_muted and terminal.leds.is_mute_lit, 3, "muted")
            await until(lambda: np.abs(alice.heard(0.3)).max() < 50, MEDIA_S, "silence at alice")
            await press(terminal, "mute")
            await until(lambda: not terminal.machine.is_muted, 3, "unmuted")
            assert not terminal.leds.is_mute_lit
            await until(lambda: has_tone(alice.heard(0.2), 1000), MEDIA_S, "tone again after unmute")
            # Press again: leave; the camera closes and alice leaves our screen.
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IDLE, JOIN_S, "idle after leaving")
            assert camera.is_closed and speaker.is_closed
            assert ("left", str(alice.feed_id)) in sink.log
            states = [t.after for t in terminal.machine.history]
            assert states[-4:] == [State.JOINING, State.IN_CALL, State.LEAVING, State.IDLE]
            # Alice's own subscription to us keeps its ICE socket (one UDP socket per pc).
            await until(lambda: _sockets() <= sockets_before + 1, 5, "the call's sockets closed")
            leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith(("call-", "remote-", "janus-"))]
            assert not leftovers, f"tasks outlived the call: {leftovers}"


def _sockets() -> int:
    """Sockets this process holds (UDP for ICE, TCP for Janus's HTTP API)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:
            pass    # closed while we looked
    return count
