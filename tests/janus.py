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
import ctypes
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

JANUS_PORT = 8088
JANUS_START_TIMEOUT_S = 10.0
JANUS_STOP_TIMEOUT_S = 5.0
HTTP_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 10.0
CLONE_NEWNET = 0x40000000


@dataclass
class JanusServer:
    netns: str
    directory: Path
    pid: int
    url: str

    @property
    def log(self) -> str:
        return (self.directory / "janus.log").read_text(errors="replace")


def _janus_lib_dir() -> Path:
    for candidate in ("/usr/lib/x86_64-linux-gnu/janus", "/usr/lib/aarch64-linux-gnu/janus",
                      "/usr/lib/janus"):
        if Path(candidate, "plugins", "libjanus_videoroom.so").exists():
            return Path(candidate)
    out = subprocess.run(["dpkg", "-L", "janus"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if line.endswith("/plugins/libjanus_videoroom.so"):
            return Path(line).parent.parent
    raise RuntimeError("janus: plugins directory not found (is the Debian 'janus' package installed?)")


def _write_config(directory: Path, port: int) -> None:
    lib = _janus_lib_dir()
    (directory / "janus.jcfg").write_text(f"""
general: {{
    configs_folder = "{directory}"
    plugins_folder = "{lib}/plugins"
    transports_folder = "{lib}/transports"
    events_folder = "{lib}/events"
    loggers_folder = "{lib}/loggers"
    debug_level = 4
    interface = "127.0.0.1"
    server_name = "roombox-test"
    session_timeout = 60
}}
media: {{
    rtp_port_range = "20000-20999"
    ipv6 = false
    no_media_timer = 2
}}
nat: {{
    ice_enforce_list = "jlo0"
    ignore_mdns = true
    full_trickle = false
}}
plugins: {{
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_streaming.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_voicemail.so"
}}
transports: {{
    disable = "libjanus_websockets.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
    disable = "libjanus_gelfevh.so,libjanus_mqttevh.so,libjanus_nanomsgevh.so,libjanus_rabbitmqevh.so,libjanus_sampleevh.so,libjanus_wsevh.so"
}}
""")
    (directory / "janus.transport.http.jcfg").write_text(f"""
general: {{ json = "plain", base_path = "/janus", http = true, port = {port}, ip = "127.0.0.1", https = false, acl = "127." }}
admin: {{ admin_http = false, admin_https = false }}
""")
    (directory / "janus.plugin.videoroom.jcfg").write_text("general: { string_ids = false }\n")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def create_netns(name: str) -> None:
    """A namespace with lo and jlo0 (ifb; this kernel has no dummy), both holding 127.0.0.1."""
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    try:
        _ip("-n", name, "link", "add", "jlo0", "type", "dummy")
    except subprocess.CalledProcessError:
        _ip("-n", name, "link", "add", "jlo0", "type", "ifb")
    _ip("-n", name, "addr", "add", "127.0.0.1/32", "dev", "jlo0")
    _ip("-n", name, "link", "set", "jlo0", "up")


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def start_janus(netns: str, port: int = JANUS_PORT) -> JanusServer:
    """Start Janus inside ``netns``; returns once its HTTP API is up (or raises with its log)."""
    directory = Path(tempfile.mkdtemp(prefix="janus-test-"))
    _write_config(directory, port)
    log = open(directory / "janus.log", "wb")
    process = subprocess.Popen(["ip", "netns", "exec", netns, "janus", "-C", str(directory / "janus.jcfg"),
                                "-F", str(directory), "-o"], stdout=log, stderr=subprocess.STDOUT,
                               cwd=directory)
    log.close()
    server = JanusServer(netns, directory, process.pid, f"http://127.0.0.1:{port}/janus")
    deadline = time.monotonic() + JANUS_START_TIMEOUT_S
    while "HTTP webserver started" not in server.log:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_janus(server)
            raise RuntimeError(f"janus did not start within {JANUS_START_TIMEOUT_S} s:\n{server.log[-2000:]}")
        time.sleep(0.05)
    return server


def stop_janus(server: JanusServer) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, 15)
    deadline = time.monotonic() + JANUS_STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(server.pid, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, 9)
    shutil.rmtree(server.directory, ignore_errors=True)


@contextlib.contextmanager
def netns_entered(name: str) -> Iterator[None]:
    """Move the calling thread into network namespace ``name`` and back afterwards.
    Sockets keep the namespace they were created in."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name} failed")
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original namespace failed")
    finally:
        os.close(home)
        os.close(target)


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
