"""A call survives its service: Janus killed and restarted mid-call → degraded, backoff,
automatic rejoin; hostile signalling is dropped without touching the call; remote mute
mutes but never unmutes; a room PIN is used and a wrong one ends the join with its reason."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from terminal.app import MeetingSettings
from terminal.state import State
from tests.janus import start_janus, stop_janus
from tests.terminal.conftest import meeting_url, press, running_terminal
from tests.terminal.meeting_peer import RemotePeer, create_room, until

pytestmark = pytest.mark.timeout(120)
JOIN_S = 20.0
RESTART_PORT = 8089


@contextlib.contextmanager
def own_janus(netns: str):
    """A second Janus in the same namespace that this test may kill and restart."""
    servers = [start_janus(netns, RESTART_PORT)]
    try:
        yield servers
    finally:
        stop_janus(servers[-1])


async def test_join_retries_after_janus_restart(in_janus_netns):
    with own_janus(in_janus_netns.netns) as servers:
        url = servers[0].url
        await create_room(url, 4321)
        async with running_terminal(MeetingSettings(meeting_url=meeting_url(url, 4321))) as terminal:
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call")
            session = terminal.session
            camera = session.encoder.camera
            await asyncio.to_thread(stop_janus, servers.pop())
            await until(lambda: terminal.machine.state == State.DEGRADED, JOIN_S, "degraded after the kill")
            assert "rejoining" in terminal.machine.reason
            assert terminal.leds.shown == {"colour": "red", "pattern": "pulse"}, "red: the camera is still open"
            assert not camera.is_closed, "the call goes on: the camera stays open while rejoining"
            servers.append(await asyncio.to_thread(start_janus, in_janus_netns.netns, RESTART_PORT))
            await create_room(url, 4321)
            await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call after the restart")
            assert terminal.session is session and session.rejoins == 1
            frames = session.encoder.status()["outputs"]["webrtc"]["written"]
            await until(lambda: session.encoder.status()["outputs"]["webrtc"]["written"] > frames + 15,
                        JOIN_S, "frames flowing to the new peer connection")
            states = [t.after for t in terminal.machine.history]
            # Each failed attempt while Janus is away updates the degraded reason.
            states = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
            assert states[-3:] == [State.IN_CALL, State.DEGRADED, State.IN_CALL]
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IDLE, JOIN_S, "idle after leaving")
            assert camera.is_closed
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith(("call-", "remote-", "janus-"))]
    assert not leftovers, f"tasks outlived the call: {leftovers}"


async def test_silent_janus_like_a_network_cut_is_noticed_and_rejoined(in_janus_netns, monkeypatch):
    # SIGSTOP: the kernel still accepts connections but nothing answers, as when the network
    # to the server is cut; only our own timeouts can notice.
    from terminal.conference import janus_api
    monkeypatch.setattr(janus_api, "KEEPALIVE_S", 0.5)
    monkeypatch.setattr(janus_api, "HTTP_TIMEOUT_S", 1.0)
    with own_janus(in_janus_netns.netns) as servers:
        url = servers[0].url
        await create_room(url, 4322)
        async with running_terminal(MeetingSettings(meeting_url=meeting_url(url, 4322))) as terminal:
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call")
            os.kill(servers[-1].pid, signal.SIGSTOP)
            try:
                await until(lambda: terminal.machine.state == State.DEGRADED, JOIN_S, "degraded while cut off")
            finally:
                os.kill(servers[-1].pid, signal.SIGCONT)
            await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call once it answers again")
            assert terminal.session.rejoins == 1
            # No ghost of us is left in the room (here the destroy queued during the freeze
            # reaches Janus when it resumes; on a real cut, Continuity.stale_sessions does it).
            async with RemotePeer(url, 4322, "observer", publish=False) as observer:
                listed = await observer.request({"request": "listparticipants", "room": 4322})
                ours = [p["id"] for p in listed["participants"] if p.get("display") == "roombox"]
                assert ours == [terminal.session.conference.publisher_id]


async def test_session_expired_on_the_server_is_rejoined(room, monkeypatch):
    from terminal.conference import janus_api
    monkeypatch.setattr(janus_api, "KEEPALIVE_S", 0.5)
    janus_url, number = room
    async with running_terminal(MeetingSettings(meeting_url=meeting_url(janus_url, number))) as terminal:
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call")
        expired = terminal.session.conference.api.session_id
        # What Janus does when a session times out: it is destroyed under us.
        killer = janus_api.JanusApi(janus_url)
        try:
            await killer.destroy_stale(expired)
        finally:
            await killer.close()
        await until(lambda: terminal.session.rejoins == 1 and terminal.machine.state == State.IN_CALL,
                    JOIN_S, "in_call again with a new session")
        assert terminal.session.conference.api.session_id != expired


async def test_hostile_signalling_is_dropped_and_the_call_goes_on(room):
    janus_url, number = room
    async with running_terminal(MeetingSettings(meeting_url=meeting_url(janus_url, number))) as terminal:
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call")
        api = terminal.session.conference.api
        handle = next(iter(api._queues))
        hostile = [None, 42, "janus", [], {"janus": 7}, {"janus": "event", "sender": "x"},
                   {"janus": "event", "sender": handle, "plugindata": "nope"},
                   {"janus": "event", "sender": handle, "jsep": {"type": "rollback", "sdp": 1}},
                   {"janus": "boom"}, {"janus": "event", "transaction": ["t"]}]
        for message in hostile:
            api._dispatch(message)
        # Well-formed but nonsensical VideoRoom events on our own handle.
        for data in ({"videoroom": "event", "publishers": [{"id": "x"}, 5, {"id": True}]},
                     {"videoroom": "event", "unpublished": "nobody"},
                     {"videoroom": "event", "leaving": {"id": 1}}):
            api._dispatch({"janus": "event", "sender": handle,
                           "plugindata": {"plugin": "janus.plugin.videoroom", "data": data}})
        frames = terminal.session.encoder.frames_encoded
        await until(lambda: terminal.session.encoder.frames_encoded > frames + 15, JOIN_S, "media goes on")
        assert api.messages_dropped == len(hostile)
        assert terminal.machine.state == State.IN_CALL and terminal.session.rejoins == 0


async def test_remote_mute_mutes_and_only_the_room_unmutes(room):
    janus_url, number = room
    async with running_terminal(MeetingSettings(meeting_url=meeting_url(janus_url, number))) as terminal:
        async with RemotePeer(janus_url, number, "moderator", publish=False) as moderator:
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call")
            ours = terminal.session.conference.publisher_id
            await moderator.request({"request": "moderate", "room": number, "id": ours, "mid": "1", "mute": True})
            await until(lambda: terminal.machine.is_muted, JOIN_S, "muted by the moderator")
            assert terminal.leds.is_mute_lit and terminal.session.mic_feed.is_muted
            assert "mute: muted at the request of room moderator" in terminal.machine.notices
            await moderator.request({"request": "moderate", "room": number, "id": ours, "mid": "1", "mute": False})
            await press(terminal, "mute")
            await until(lambda: not terminal.machine.is_muted, 3, "unmuted by the room")
            assert not terminal.leds.is_mute_lit


async def test_room_pin_is_used_and_a_wrong_one_ends_the_join_with_its_reason(in_janus_netns):
    url = in_janus_netns.url
    await create_room(url, 5555, pin="s3cret")
    right = MeetingSettings(meeting_url=meeting_url(url, 5555, pin="s3cret"))
    async with running_terminal(right) as terminal:
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call with the PIN")
        assert "s3cret" not in str(terminal.status())
    wrong = MeetingSettings(meeting_url=meeting_url(url, 5555, pin="guess"))
    async with running_terminal(wrong) as terminal:
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IDLE and terminal.machine.notices, JOIN_S,
                    "idle again after the rejected join")
        assert "unauthorized (wrong or missing PIN)" in terminal.machine.notices[-1]
        assert terminal.session is None


async def test_one_participants_failed_connection_is_resubscribed_without_leaving_the_call(room):
    janus_url, number = room
    async with RemotePeer(janus_url, number, "alice", tone_hz=440) as alice:
        async with running_terminal(MeetingSettings(meeting_url=meeting_url(janus_url, number))) as terminal:
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IN_CALL, JOIN_S, "in_call")
            sink, feed = terminal.sink, str(alice.feed_id)
            await until(lambda: sink.frames.get(feed, 0) >= 10, JOIN_S, "alice's video")
            conference = terminal.session.conference
            first_pc = conference.subscriptions[alice.feed_id].pc
            # What ICE consent expiry does: aioice closes the connection under the transport.
            ice = first_pc.getTransceivers()[0].receiver.transport.transport._connection
            await ice.close()
            await until(lambda: ("left", feed) in sink.log, JOIN_S, "alice's tile dropped with the dead connection")
            await until(lambda: alice.feed_id in conference.subscriptions
                        and conference.subscriptions[alice.feed_id].pc is not first_pc
                        and sink.frames.get(feed, 0) >= 10, JOIN_S, "alice's video again on a new connection")
            assert terminal.machine.state == State.IN_CALL and terminal.session.rejoins == 0, \
                "the call itself went on"
