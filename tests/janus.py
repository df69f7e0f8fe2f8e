"""A real Janus VideoRoom on loopback for tests (and the video benchmark), plus fixtures.

Facts behind the setup (see ../shared/janus-loopback/README.md): Janus skips interfaces
flagged loopback when gathering ICE candidates, so it runs in a private network namespace
holding ``lo`` and ``jlo0``, a non-loopback device that also carries 127.0.0.1/32 and is the
only interface Janus may use for ICE. The test process joins that namespace on its main
thread (``setns``) for the duration of a test, so aiortc's sockets are created there too.
Only the VideoRoom plugin and the plain HTTP transport (on 127.0.0.1) are enabled.

Fixtures: ``loopback_ice`` (aiortc gathers on 127.0.0.1 only), ``janus`` (a running
server; session-scoped), ``in_janus_netns`` (the test runs inside Janus's namespace).
Helpers: ``JanusClient`` (HTTP API, long-poll events), ``create_room``, ``publish``,
``subscribe`` (VideoRoom flows for aiortc peers).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from typing import Any, AsyncIterator, Iterator

import pytest

from terminal.loopback import janus as loopback

JANUS_PORT = 8088
HTTP_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 10.0


# The server itself is the product's loopback Janus (terminal/loopback/janus.py, which
# `roombox demo` uses): the tests run exactly what users run.
JanusServer = loopback.LoopbackJanus
create_netns = loopback.create_netns
delete_netns = loopback.delete_netns
netns_entered = loopback.entered
stop_janus = loopback.stop


def start_janus(netns: str, port: int = JANUS_PORT) -> JanusServer:
    """Start Janus inside ``netns``; returns once its HTTP API is up (or raises with its log)."""
    return loopback.start(netns, port)


def only_loopback_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
    """Replacement for aioice's host address discovery: 127.0.0.1 only."""
    return ["127.0.0.1"]


class JanusClient:
    """Janus's plain-HTTP API over asyncio streams: requests, and one long-poll task (owned
    by ``session()``) that hands events to whoever waits for their transaction or handle."""

    def __init__(self, url: str) -> None:
        self.url = url
        host_port = url.split("//", 1)[1].split("/", 1)[0]
        self.host, port = host_port.split(":")
        self.port = int(port)
        self.base_path = "/" + url.split("//", 1)[1].split("/", 1)[1]
        self.session_id: int | None = None
        self._events: dict[int, asyncio.Queue] = {}
        self._webrtc_up: dict[int, asyncio.Event] = {}
        self._ids = itertools.count(1)

    async def _http(self, method: str, path: str, body: dict | None = None,
                    timeout_s: float = HTTP_TIMEOUT_S) -> dict:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                data = json.dumps(body).encode() if body is not None else b""
                # HTTP/1.0: the reply comes unchunked and ends when Janus closes the connection.
                writer.write(f"{method} {path} HTTP/1.0\r\nHost: {self.host}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                             f"Connection: close\r\n\r\n".encode() + data)
                await writer.drain()
                response = await reader.read()
            finally:
                writer.close()
        head, _, payload = response.partition(b"\r\n\r\n")
        if head.split(b" ", 2)[1:2] != [b"200"]:
            raise RuntimeError(f"janus: {method} {path} answered {head[:60]!r}")
        return json.loads(payload)

    async def _request(self, path: str, body: dict) -> dict:
        body = dict(body, transaction=f"t{next(self._ids)}")
        reply = await self._http("POST", path, body)
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {body['janus']} failed: {reply['error']}")
        return reply

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator["JanusClient"]:
        reply = await self._request(self.base_path, {"janus": "create"})
        self.session_id = reply["data"]["id"]
        async with asyncio.TaskGroup() as tasks:
            poller = tasks.create_task(self._poll())
            try:
                yield self
            finally:
                poller.cancel()
                with contextlib.suppress(Exception):
                    await self._request(f"{self.base_path}/{self.session_id}", {"janus": "destroy"})

    async def _poll(self) -> None:
        while True:
            events = await self._http("GET", f"{self.base_path}/{self.session_id}?maxev=10",
                                      timeout_s=40)
            for event in events if isinstance(events, list) else [events]:
                handle = event.get("sender")
                if event.get("janus") == "webrtcup" and handle in self._webrtc_up:
                    self._webrtc_up[handle].set()
                elif handle in self._events:
                    self._events[handle].put_nowait(event)

    async def attach(self) -> int:
        reply = await self._request(f"{self.base_path}/{self.session_id}",
                                    {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = reply["data"]["id"]
        self._events[handle] = asyncio.Queue()
        self._webrtc_up[handle] = asyncio.Event()
        return handle

    async def webrtc_up(self, handle: int, timeout_s: float = EVENT_TIMEOUT_S) -> None:
        """Wait for Janus's ``webrtcup`` on ``handle`` (ICE and DTLS done: a publisher's feed
        can be subscribed to from then on)."""
        async with asyncio.timeout(timeout_s):
            await self._webrtc_up[handle].wait()

    async def message(self, handle: int, body: dict, jsep: dict | None = None) -> dict:
        """A plugin request. Synchronous requests answer at once; asynchronous ones
        (join, publish, start) answer with an event, which is awaited here."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self._request(f"{self.base_path}/{self.session_id}/{handle}", request)
        if reply.get("janus") == "success":
            data = reply["plugindata"]["data"]
            if data.get("videoroom") == "event" and "error" in data:
                raise RuntimeError(f"janus: videoroom {body['request']}: {data['error']}")
            return {"data": data}
        return await self.event(handle)

    async def event(self, handle: int, timeout_s: float = EVENT_TIMEOUT_S) -> dict:
        """The next plugin event (with its jsep, if any) for ``handle``."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self._events[handle].get()
                if event.get("janus") == "event":
                    data = event["plugindata"]["data"]
                    if "error" in data:
                        raise RuntimeError(f"janus: videoroom: {data['error']}")
                    return {"data": data, "jsep": event.get("jsep")}

    async def trickle_done(self, handle: int) -> None:
        await self._request(f"{self.base_path}/{self.session_id}/{handle}",
                            {"janus": "trickle", "candidate": {"completed": True}})


# ---- VideoRoom flows (aiortc peers) -----------------------------------------------------

async def create_room(client: JanusClient, room: int, videocodec: str = "h264",
                      playout_delay_ext: bool = False) -> None:
    """A VideoRoom that takes only ``videocodec`` video (Janus's default is VP8).
    ``playout_delay_ext`` lets subscribers ask browsers to render at once (min/max delay)."""
    handle = await client.attach()
    await client.message(handle, {"request": "create", "room": room, "publishers": 6,
                                  "videocodec": videocodec, "bitrate": 0, "fir_freq": 0,
                                  "playoutdelay_ext": playout_delay_ext})


async def publish(client: JanusClient, room: int, pc, display: str = "box") -> int:
    """Join ``room`` as a publisher with ``pc``'s tracks; returns the publisher (feed) id once
    Janus reports the PeerConnection up (subscribing earlier answers "No such feed")."""
    handle = await client.attach()
    joined = await client.message(handle, {"request": "join", "ptype": "publisher",
                                           "room": room, "display": display})
    feed = joined["data"]["id"]
    await pc.setLocalDescription(await pc.createOffer())
    reply = await client.message(handle, {"request": "publish", "audio": False, "video": True},
                                 jsep={"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False})
    from aiortc import RTCSessionDescription
    await pc.setRemoteDescription(RTCSessionDescription(**{k: reply["jsep"][k] for k in ("sdp", "type")}))
    await client.webrtc_up(handle)
    return feed


async def subscribe(client: JanusClient, room: int, feed: int, pc, attach_receiver) -> int:
    """Subscribe ``pc`` to ``feed``; ``attach_receiver(rtc_rtp_receiver)`` is called once
    the video transceiver exists and before media can flow. Returns the handle."""
    from aiortc import RTCSessionDescription
    handle = await client.attach()
    reply = await client.message(handle, {"request": "join", "ptype": "subscriber", "room": room,
                                          "streams": [{"feed": feed}]})
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["jsep"]["sdp"], type="offer"))
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            attach_receiver(transceiver.receiver)
    await pc.setLocalDescription(await pc.createAnswer())
    await client.message(handle, {"request": "start", "room": room},
                         jsep={"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False})
    return handle


# ---- pytest fixtures -------------------------------------------------------------------

@pytest.fixture
def loopback_ice(monkeypatch) -> None:
    """aiortc gathers ICE candidates on 127.0.0.1 only (the test seam: aioice's host address
    discovery), so nothing listens beyond loopback."""
    import aioice.ice
    monkeypatch.setattr(aioice.ice, "get_host_addresses", only_loopback_addresses)


_instances = itertools.count()


@pytest.fixture(scope="session")
def janus() -> Iterator[JanusServer]:
    """A running loopback-only Janus in its own network namespace."""
    if os.geteuid() != 0:
        pytest.skip("janus: needs root to create a network namespace (CI runs as root)")
    if shutil.which("janus") is None:
        pytest.fail("janus: the Debian 'janus' package is not installed (listed in deps/apt.txt)")
    # Unique per fixture instance: the video and meetings conftests each import this
    # session fixture, so one pytest process may start two.
    netns = f"roombox-janus-{os.getpid()}-{next(_instances)}"
    create_netns(netns)
    try:
        server = start_janus(netns)
        try:
            yield server
        finally:
            stop_janus(server)
    finally:
        delete_netns(netns)


@pytest.fixture
def in_janus_netns(janus: JanusServer, loopback_ice) -> Iterator[JanusServer]:
    """The test (its event loop thread) runs inside Janus's namespace."""
    with netns_entered(janus.netns):
        yield janus
