"""The VideoRoom adapter over Janus's WebSocket API (janus+ws): the same call as over HTTP."""
from __future__ import annotations

import asyncio

import pytest

from terminal.app import MeetingSettings
from terminal.loopback import janus as loopback
from terminal.state import State
from tests.terminal.conftest import press, running_terminal
from tests.terminal.meeting_peer import RemotePeer, create_room, until

pytestmark = pytest.mark.timeout(60)
HTTP_PORT, WS_PORT = 8090, 8190
WAIT_S = 20.0


async def test_join_over_the_websocket_api_sends_and_receives_media(in_janus_netns):
    server = await asyncio.to_thread(loopback.start, in_janus_netns.netns, HTTP_PORT, WS_PORT)
    try:
        await create_room(server.url, 77)
        settings = MeetingSettings(meeting_url=f"janus+ws://127.0.0.1:{WS_PORT}/?room=77")
        async with RemotePeer(server.url, 77, "alice") as alice, running_terminal(settings) as terminal:
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IN_CALL, WAIT_S, "in_call over WebSocket")
            await alice.watch(await alice.box_feed(WAIT_S))
            await until(lambda: len(alice.stamps) >= 20, WAIT_S, "alice decoding our frames")
            await until(lambda: terminal.sink.frames.get(str(alice.feed_id), 0) >= 10, WAIT_S,
                        "alice's video on our sink")
            assert terminal.session.conference.api.messages_dropped == 0
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IDLE, WAIT_S, "idle after leaving")
    finally:
        await asyncio.to_thread(loopback.stop, server)
