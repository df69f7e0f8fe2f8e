"""WHIP publishing (RFC 9725) against a WHIP endpoint served over real HTTP (uvicorn, on
127.0.0.1) whose answering side is a real aiortc peer decoding our stamped frames."""
from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from fastapi import FastAPI, Request, Response

from hal.camera import stamp as stamps
from media.video import VideoReceiver
from terminal.app import MeetingSettings
from terminal.state import State
from tests.janus import loopback_ice  # noqa: F401  (fixture: ICE on 127.0.0.1 only)
from tests.terminal.conftest import press, running_terminal
from tests.terminal.meeting_peer import until

pytestmark = pytest.mark.timeout(60)
TOKEN = "t0ken"
WAIT_S = 15.0


class WhipEndpoint:
    """A WHIP endpoint: POST offer → 201 + answer + Location; DELETE ends the session."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.pcs: list[RTCPeerConnection] = []
        self.stamps: list[stamps.Stamp] = []
        self.audio_frames = 0
        self.deleted: list[str] = []
        self.tasks: list[asyncio.Task] = []
        self.app.post("/whip/room")(self.publish)
        self.app.delete("/whip/sessions/{number}")(self.delete)

    async def publish(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return Response("bad token", status_code=401)
        if request.headers.get("content-type") != "application/sdp":
            return Response("expected application/sdp", status_code=415)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        receiver = VideoReceiver()
        await receiver.__aenter__()

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video":
                receiver.attach(next(t for t in pc.getTransceivers() if t.receiver.track is track).receiver)
                self.tasks.append(asyncio.create_task(self._decode(receiver)))
            else:
                self.tasks.append(asyncio.create_task(self._hear(track)))

        await pc.setRemoteDescription(RTCSessionDescription((await request.body()).decode(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return Response(pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                        headers={"Location": f"/whip/sessions/{len(self.pcs)}"})

    async def delete(self, number: str) -> Response:
        self.deleted.append(number)
        return Response(status_code=200)

    async def _decode(self, receiver: VideoReceiver) -> None:
        while True:
            stamp = stamps.read_frame(await receiver.recv())
            if stamp is not None:
                self.stamps.append(stamp)

    async def _hear(self, track) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                self.audio_frames += 1


@pytest.fixture
async def whip(loopback_ice):
    endpoint = WhipEndpoint()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(endpoint.app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    yield endpoint, f"whip+http://127.0.0.1:{sock.getsockname()[1]}/whip/room"
    for t in endpoint.tasks:
        t.cancel()
    for pc in endpoint.pcs:
        await pc.close()
    server.should_exit = True
    await task
    sock.close()


async def test_whip_publishes_our_camera_and_microphone_and_deletes_on_leave(whip):
    endpoint, url = whip
    async with running_terminal(MeetingSettings(meeting_url=f"{url}?token={TOKEN}")) as terminal:
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IN_CALL, WAIT_S, "in_call over WHIP")
        await until(lambda: len(endpoint.stamps) >= 20 and endpoint.audio_frames >= 25, WAIT_S,
                    "the endpoint decoding our frames and receiving our audio")
        counters = [s.counter for s in endpoint.stamps]
        assert counters == sorted(counters)
        assert TOKEN not in str(terminal.status())
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IDLE, WAIT_S, "idle after leaving")
    assert endpoint.deleted == ["1"]


async def test_whip_refusal_ends_the_join_with_the_http_reason(whip):
    endpoint, url = whip
    async with running_terminal(MeetingSettings(meeting_url=f"{url}?token=wrong")) as terminal:
        await press(terminal, "join")
        await until(lambda: terminal.machine.state == State.IDLE and terminal.machine.notices, WAIT_S,
                    "idle again after the refusal")
        assert "refused our offer with HTTP 401 (bad token)" in terminal.machine.notices[-1]
    assert endpoint.deleted == []
