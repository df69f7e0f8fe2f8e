"""systemd integration: a real NOTIFY_SOCKET the test listens on, the watchdog cadence, a
blocked loop that stops the pings, and structured journald fields."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import statistics
import subprocess
import sys
import time

from systemd.journal import JournalHandler

from terminal.logs import StructuredFields, is_journal_stderr
from terminal.notify import ping_watchdog, watchdog_interval_s

WATCHDOG_USEC = 400_000   # WatchdogSec=0.4 s: pings every 0.2 s


def listen(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock


def receive_until(sock, deadline_s, stop_when=lambda messages: False):
    messages = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not stop_when(messages):
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        messages.append((time.monotonic(), data.decode()))
    return messages


def test_run_sends_ready_status_watchdog_and_stopping(tmp_path):
    sock = listen(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "terminal.cli", "run", "--profile", "sim", "--duration", "3",
                             "--provisioning", "off", "--metrics", "off"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        messages = receive_until(sock, 20, lambda m: any("STOPPING=1" in text for _, text in m))
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        sock.close()
    texts = [text for _, text in messages]
    ready = [i for i, text in enumerate(texts) if "READY=1" in text]
    assert len(ready) == 1 and "STATUS=idle: ready" in texts[ready[0]]
    assert messages[ready[0]][0] - started < 3.0          # goal: start -> READY within 3 s
    pings = [at for at, text in messages if text == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 8
    assert 0.15 < statistics.median(gaps) < 0.3
    assert texts[-1] == "STOPPING=1\nSTATUS=stopping"


async def test_a_blocked_event_loop_sends_no_pings(tmp_path, monkeypatch):
    sock = listen(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    # Read as they come (a unix datagram queue holds only ~10 messages before senders block).
    reader = asyncio.create_task(asyncio.to_thread(receive_until, sock, 1.6))
    try:
        pinger = asyncio.create_task(ping_watchdog(0.05))
        await asyncio.sleep(0.3)
        blocked_at = time.monotonic()
        time.sleep(0.6)                       # a blocking call on the loop, like a hung driver
        await asyncio.sleep(0.3)
        pinger.cancel()
        messages = await reader
    finally:
        sock.close()
    pings = [at for at, text in messages if text == "WATCHDOG=1"]
    during_block = [at for at in pings if blocked_at + 0.05 < at < blocked_at + 0.55]
    assert len(pings) >= 8 and during_block == []
    assert max(b - a for a, b in zip(pings, pings[1:])) >= 0.55


def test_watchdog_interval_is_half_of_watchdog_sec_and_only_for_this_pid(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval_s() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    monkeypatch.delenv("WATCHDOG_PID")
    assert watchdog_interval_s() is None


def test_journal_entries_carry_component_state_device_and_call_id():
    sent = []
    handler = JournalHandler(sender_function=lambda MESSAGE, **fields: sent.append((MESSAGE, fields)))
    handler.addFilter(StructuredFields())
    logger = logging.getLogger("roombox.test-journal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("camera: lost /dev/video0 (No such device)",
                       extra={"state": "in_call", "device": "/dev/video0", "call_id": "c-42"})
    finally:
        logger.removeHandler(handler)
    message, fields = sent[0]
    assert message == "camera: lost /dev/video0 (No such device)"
    assert (fields["COMPONENT"], fields["STATE"], fields["DEVICE"], fields["CALL_ID"]) == (
        "camera", "in_call", "/dev/video0", "c-42")
    assert fields["PRIORITY"] == "4"


def test_journal_is_used_only_when_stderr_is_the_journal_stream(tmp_path, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not is_journal_stderr()
    info = os.fstat(sys.stderr.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    assert is_journal_stderr()
