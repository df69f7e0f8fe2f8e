"""Headless Chromium as a Janus VideoRoom subscriber, for the benchmarks (bench/video.py,
bench/loss_chromium.py). This process serves bench/chromium_page.html on 127.0.0.1 and does
the Janus signalling for it (join on the page's /offer, start with its /answer); the page runs
the PeerConnection, reads each presented frame's stamp and posts what it measured.

Run it in the network namespace Janus runs in (Chromium inherits the caller's namespace).
"""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
         "--disable-features=WebRtcHideLocalIpsWithMdns"]
PAGE = Path(__file__).with_name("chromium_page.html")
RESULT_MARGIN_S = 30.0       # the page posts its result this long after its measuring time


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def candidate_ports(sdp: str) -> tuple[int, ...]:
    """The UDP ports of the ICE candidates in an SDP (the page gathers before answering)."""
    ports = set()
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            words = line.split()
            if len(words) > 5 and words[2].lower() == "udp":
                ports.add(int(words[5]))
    return tuple(sorted(ports))


async def chromium_subscriber(client: Any, handle: int, room: int, feed: int, seconds: float,
                              playout_delay_ms: int | None = None,
                              on_answer: Callable[[str, str], Awaitable[None]] | None = None) -> dict:
    """Subscribe headless Chromium to ``feed`` on a Janus handle; the page measures for
    ``seconds`` after its first frame. ``on_answer(offer_sdp, answer_sdp)`` runs once the
    subscription started (e.g. to put loss on Janus's port for this viewer: Chromium's
    non-trickle answer carries no candidates, Janus learns its address from the checks). Returns the page's result, with
    ``offset_us`` (CLOCK_REALTIME - CLOCK_MONOTONIC of this process) and
    ``joined_monotonic``."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future = loop.create_future()
    joined: dict[str, Any] = {}
    offset_us = time.time_ns() // 1000 - time.monotonic_ns() // 1000

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
        except asyncio.IncompleteReadError:      # a speculative connection closed unused
            writer.close()
            return
        method, target = head.split(" ", 2)[:2]
        length = next((int(line.split(":")[1]) for line in head.split("\r\n")
                       if line.lower().startswith("content-length:")), 0)
        body = json.loads(await reader.readexactly(length)) if length else None
        reply, kind = b"{}", "application/json"
        if target.startswith("/?") or target == "/":
            reply, kind = PAGE.read_bytes(), "text/html"
        elif target == "/offer":
            joined["t"] = time.monotonic()
            event = await client.message(handle, {"request": "join", "ptype": "subscriber",
                                                  "room": room, "streams": [{"feed": feed}]})
            joined["offer"] = event["jsep"]["sdp"]
            reply = json.dumps({"type": "offer", "sdp": joined["offer"]}).encode()
        elif target == "/answer":
            await client.message(handle, {"request": "start", "room": room},
                                 jsep={"type": "answer", "sdp": body["sdp"], "trickle": False})
            if playout_delay_ms is not None:
                # Janus stamps the playout-delay extension on what it forwards: the browser
                # renders each frame as soon as it is decoded instead of smoothing.
                await client.message(handle, {"request": "configure", "streams": [
                    {"mid": "0", "min_delay": playout_delay_ms, "max_delay": playout_delay_ms}]})
            if on_answer is not None:
                await on_answer(joined["offer"], body["sdp"])
        elif target == "/result" and not result.done():
            result.set_result(body)
        writer.write(f"HTTP/1.0 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {len(reply)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    browser = await asyncio.create_subprocess_exec(
        chromium_binary(), *FLAGS, f"--user-data-dir={profile}",
        f"http://127.0.0.1:{port}/?offset_us={offset_us}&seconds={seconds}",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with asyncio.timeout(seconds + RESULT_MARGIN_S):
            measured = await result
    finally:
        browser.terminate()
        await asyncio.wait_for(browser.wait(), 10)
        server.close()
        shutil.rmtree(profile, ignore_errors=True)
    if "error" in measured:
        raise RuntimeError(f"chromium page: {measured['error']}")
    measured.update(offset_us=offset_us, joined_monotonic=joined["t"])
    return measured
