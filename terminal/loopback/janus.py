"""Start and stop a loopback-only Janus (VideoRoom + plain HTTP on 127.0.0.1) in a private
network namespace, and move the calling thread into it. Blocking; root only."""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
CLONE_NEWNET = 0x40000000
UNUSED_PLUGINS = ("audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip",
                  "streaming", "textroom", "videocall", "voicemail")
# The WebSockets transport listens on every interface by default: never load it.
UNUSED_TRANSPORTS = ("websockets", "mqtt", "nanomsg", "pfunix", "rabbitmq")


class LoopbackUnavailable(RuntimeError):
    """The loopback meeting cannot run here (not root, Janus not installed, start failed)."""


@dataclass
class LoopbackJanus:
    netns: str
    directory: Path
    pid: int
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/janus"

    def meeting_url(self, room: int) -> str:
        return f"janus+http://127.0.0.1:{self.port}/janus?room={room}"

    @property
    def log(self) -> str:
        return (self.directory / "janus.log").read_text(errors="replace")


def check_possible() -> None:
    if os.geteuid() != 0:
        raise LoopbackUnavailable("loopback Janus: needs root for its private network namespace "
                                  "(run as root, e.g. `sudo make demo`; CI runs as root)")
    if shutil.which("janus") is None:
        raise LoopbackUnavailable("loopback Janus: the Debian 'janus' package is not installed "
                                  "(`make deps` installs it from deps/apt.txt)")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def create_netns(name: str) -> None:
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    try:
        _ip("-n", name, "link", "add", "jlo0", "type", "dummy")
    except subprocess.CalledProcessError:
        _ip("-n", name, "link", "add", "jlo0", "type", "ifb")   # kernels without dummy
    _ip("-n", name, "addr", "add", "127.0.0.1/32", "dev", "jlo0")
    _ip("-n", name, "link", "set", "jlo0", "up")


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _lib_dir() -> Path:
    out = subprocess.run(["dpkg", "-L", "janus"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if line.endswith("/plugins/libjanus_videoroom.so"):
            return Path(line).parent.parent
    raise LoopbackUnavailable("loopback Janus: VideoRoom plugin not found in the janus package")


def _write_config(directory: Path, port: int, ws_port: int | None = None) -> None:
    lib = _lib_dir()
    plugins = ",".join(f"libjanus_{p}.so" for p in UNUSED_PLUGINS)
    unused = [t for t in UNUSED_TRANSPORTS if not (ws_port and t == "websockets")]
    transports = ",".join(f"libjanus_{t}.so" for t in unused)
    if ws_port:
        # Bound to 127.0.0.1 explicitly: this transport's defaults listen on every interface.
        (directory / "janus.transport.websockets.jcfg").write_text(
            f'general: {{ json = "plain", ws = true, ws_port = {ws_port}, ws_ip = "127.0.0.1", wss = false }}\n'
            'admin: { admin_ws = false, admin_wss = false }\n')
    (directory / "janus.jcfg").write_text(f"""
general: {{ configs_folder = "{directory}", plugins_folder = "{lib}/plugins",
  transports_folder = "{lib}/transports", events_folder = "{lib}/events",
  loggers_folder = "{lib}/loggers", debug_level = 4, interface = "127.0.0.1",
  server_name = "roombox-loopback", session_timeout = 60 }}
media: {{ rtp_port_range = "21000-21999", ipv6 = false, no_media_timer = 2 }}
nat: {{ ice_enforce_list = "jlo0", ignore_mdns = true, full_trickle = false }}
plugins: {{ disable = "{plugins}" }}
transports: {{ disable = "{transports}" }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
events: {{ broadcast = false }}
""")
    (directory / "janus.transport.http.jcfg").write_text(
        f'general: {{ json = "plain", base_path = "/janus", http = true, port = {port}, '
        f'ip = "127.0.0.1", https = false, acl = "127." }}\n'
        'admin: { admin_http = false, admin_https = false }\n')
    (directory / "janus.plugin.videoroom.jcfg").write_text("general: { string_ids = false }\n")


def start(netns: str, port: int, ws_port: int | None = None) -> LoopbackJanus:
    """Start Janus in ``netns``; returns once its HTTP API (and WebSocket API on
    ``ws_port``, if given) is up."""
    directory = Path(tempfile.mkdtemp(prefix="roombox-janus-"))
    _write_config(directory, port, ws_port)
    with open(directory / "janus.log", "wb") as log:
        process = subprocess.Popen(["ip", "netns", "exec", netns, "janus", "-C", str(directory / "janus.jcfg"),
                                    "-F", str(directory), "-o"], stdout=log, stderr=subprocess.STDOUT,
                                   cwd=directory)
    server = LoopbackJanus(netns, directory, process.pid, port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while "HTTP webserver started" not in server.log or (ws_port and "WebSockets thread started" not in server.log):
        if process.poll() is not None or time.monotonic() > deadline:
            text = server.log[-1500:]
            stop(server)
            raise LoopbackUnavailable(f"loopback Janus did not start within {START_TIMEOUT_S} s:\n{text}")
        time.sleep(0.05)
    return server


def stop(server: LoopbackJanus) -> None:
    """Stop Janus by its PID (SIGTERM, then SIGKILL) and remove its directory."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, 15)
    deadline = time.monotonic() + STOP_TIMEOUT_S
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
def running(port: int = 8188) -> Iterator[LoopbackJanus]:
    """A Janus in a fresh namespace for the block; the calling thread is moved into the
    namespace and aioice limited to 127.0.0.1, so this process's peers reach it."""
    check_possible()
    netns = f"roombox-loop-{os.getpid()}"
    create_netns(netns)
    try:
        server = start(netns, port)
        try:
            with entered(netns), loopback_ice():
                yield server
        finally:
            stop(server)
    finally:
        delete_netns(netns)


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread in network namespace ``name`` (sockets keep theirs)."""
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


@contextlib.contextmanager
def loopback_ice() -> Iterator[None]:
    """aioice gathers host candidates on 127.0.0.1 only (it skips 127.0.0.1 by default)."""
    import aioice.ice
    original = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original
