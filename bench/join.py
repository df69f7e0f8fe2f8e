"""Meetings benchmark: one-button join, rejoin after a Janus restart, memory in a 4-party call.

Runs a real Janus VideoRoom on loopback (a private network namespace: needs root) and
simulated participants (aiortc peers publishing a stamped pattern and a 440 Hz tone).

1. Join latency, ``--joins`` times: press the (mock) join button → a participant that
   subscribes when we appear decodes our first video frame; → our speaker plays the other
   participant's audio. Terminal in this process on the ``sim`` profile (720p30 camera).
2. Rejoin, ``--restarts`` times: Janus killed mid-call, restarted, room recreated → time from
   the restarted Janus answering to the box publishing again.
3. Memory: ``roombox run`` as its own process (joined through the control socket) in a call
   with three other participants; resident set sampled every second for ``--rss-s`` seconds
   (``--soak``: 30 minutes), reported as maximum and growth (last minute vs. first minute).

    sudo .venv/bin/python bench/join.py [--joins 20] [--restarts 20] [--rss-s 30] [--soak]
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this directory comes first on sys.path, where bench/array.py would
# shadow the standard library's ``array``; the project root is what we need instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import tempfile
import time

from hal.profile import load_profile
from terminal.app import MeetingSettings, Terminal
from terminal.control import request
from terminal.loopback import janus as loopback
from terminal.loopback.peer import RemotePeer, create_room
from terminal.state import State

ROOM = 1234
WAIT_S = 20.0
POLL_S = 0.005


async def until(predicate, timeout_s: float = WAIT_S, what: str = "") -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise RuntimeError(f"bench: timed out after {timeout_s} s waiting for {what}") from None


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def press(terminal: Terminal, button: str) -> None:
    pin = terminal.buttons.device(button).pin
    pin.drive_low()
    pin.drive_high()


async def started_terminal(url: str) -> tuple[Terminal, asyncio.Event, asyncio.Task]:
    terminal = Terminal(load_profile("sim"), MeetingSettings(meeting_url=url))
    stop = asyncio.Event()
    task = asyncio.create_task(terminal.run(stop))
    await asyncio.wait_for(terminal.reached_idle.wait(), WAIT_S)
    return terminal, stop, task


async def join_latency(server, joins: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"video": [], "audio": []}
    loop = asyncio.get_running_loop()
    async with RemotePeer(server.url, ROOM, "alice", tone_hz=440):
        terminal, stop, task = await started_terminal(server.meeting_url(ROOM))
        try:
            for i in range(joins):
                async with RemotePeer(server.url, ROOM, f"viewer-{i}", publish=False) as viewer:
                    pressed = loop.time()
                    await press(terminal, "join")
                    await viewer.watch(await viewer.box_feed(WAIT_S))
                    await until(lambda: viewer.first_frame_at is not None, what="the viewer's first frame")
                    await until(lambda: terminal.session and terminal.session.mixer
                                and terminal.session.mixer.first_audible_at, what="alice on our speaker")
                    found["video"].append(viewer.first_frame_at - pressed)
                    found["audio"].append(terminal.session.mixer.first_audible_at - pressed)
                    await press(terminal, "join")
                    await until(lambda: terminal.machine.state == State.IDLE, what="idle after leaving")
                print(f"  join {i + 1:2d}: first frame at the viewer {found['video'][-1] * 1000:5.0f} ms, "
                      f"their audio on our speaker {found['audio'][-1] * 1000:5.0f} ms", flush=True)
        finally:
            stop.set()
            await task
    return found


async def rejoin_after_restart(netns: str, restarts: int, port: int) -> list[float]:
    server = await asyncio.to_thread(loopback.start, netns, port)
    times: list[float] = []
    try:
        await create_room(server.url, ROOM)
        terminal, stop, task = await started_terminal(server.meeting_url(ROOM))
        try:
            await press(terminal, "join")
            await until(lambda: terminal.machine.state == State.IN_CALL, what="in_call")
            for i in range(restarts):
                await asyncio.to_thread(loopback.stop, server)
                await until(lambda: terminal.machine.state == State.DEGRADED, what="degraded")
                server = await asyncio.to_thread(loopback.start, netns, port)
                back = time.monotonic()
                await create_room(server.url, ROOM)
                await until(lambda: terminal.machine.state == State.IN_CALL, 30, "in_call after the restart")
                times.append(time.monotonic() - back)
                print(f"  restart {i + 1:2d}: publishing again {times[-1]:.2f} s after Janus returned", flush=True)
        finally:
            stop.set()
            await task
    finally:
        await asyncio.to_thread(loopback.stop, server)
    return times


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"bench: no VmRSS for pid {pid}")


async def memory_in_four_party_call(server, seconds: float) -> list[float]:
    directory = Path(tempfile.mkdtemp(prefix="roombox-bench-"))
    socket_path = str(directory / "control.sock")
    env = {**os.environ, "ROOMBOX_ICE_HOST_ADDRESSES": "127.0.0.1"}
    process = subprocess.Popen(
        ["ip", "netns", "exec", server.netns, sys.executable, "-m", "terminal.cli", "run", "--profile", "sim",
         "--meeting", server.meeting_url(ROOM), "--control-socket", socket_path],
        env=env, stdout=subprocess.DEVNULL, stderr=open(directory / "terminal.log", "wb"))
    samples: list[float] = []
    try:
        async with RemotePeer(server.url, ROOM, "bob", tone_hz=330) as bob, \
                RemotePeer(server.url, ROOM, "carol", tone_hz=550) as carol, \
                RemotePeer(server.url, ROOM, "dave", tone_hz=660) as dave:
            await until(lambda: os.path.exists(socket_path), what="the control socket")
            await asyncio.sleep(0.5)
            reply = await request({"command": "join"}, socket_path)
            assert reply["ok"], reply

            async def in_call() -> dict:
                return (await request({"command": "status"}, socket_path))["status"]

            async with asyncio.timeout(WAIT_S):
                while True:
                    status = await in_call()
                    call = status.get("call_session") or {}
                    if status["state"] == "in_call" and len(call.get("participants", {})) == 3:
                        break
                    await asyncio.sleep(0.2)
            await dave.watch(await dave.box_feed(WAIT_S))   # someone receives the box too
            started, cpu_started = time.monotonic(), cpu_s(process.pid)
            end = started + seconds
            while time.monotonic() < end:
                samples.append(rss_mb(process.pid))
                await asyncio.sleep(1.0)
            share = (cpu_s(process.pid) - cpu_started) / (time.monotonic() - started)
            print(f"  terminal CPU over the window: {100 * share:.0f} % of a core", flush=True)
            status = await in_call()
            frames = {p["display"]: p["frames_shown"] for p in status["call_session"]["participants"].values()}
            print(f"  frames shown per remote participant: {frames}; the box's frames decoded by dave: "
                  f"{len(dave.stamps)}", flush=True)
            # The box's keyframe requests raise the others' parity (media/video/lossrate.py):
            # on a loopback call any rise is the box's load, not loss.
            plans = {peer.display: (peer.sender.pli_count, f"{100 * peer.sender.expected_loss.value:.0f} %")
                     for peer in (bob, carol, dave)}
            print(f"  keyframe requests reaching each participant, and its parity plan: {plans}", flush=True)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
    return samples


def table(rows: list[tuple[str, str, str]]) -> None:
    print(f"\n{'measure':<58} {'result':>16}  goal")
    for name, value, goal in rows:
        print(f"{name:<58} {value:>16}  {goal}")


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR)
    rows = []
    with loopback.running(port=8288) as server:
        await create_room(server.url, ROOM)
        if args.joins:
            print(f"1. {args.joins} joins", flush=True)
            found = await join_latency(server, args.joins)
            for kind, text in (("video", "press → other participant decodes our first frame"),
                               ("audio", "press → our speaker plays their audio")):
                values = found[kind]
                rows.append((f"{text} (p50 / p95)", f"{statistics.median(values) * 1000:.0f} / "
                             f"{p95(values) * 1000:.0f} ms", "p95 ≤ 1000 ms"))
        if args.restarts:
            print(f"2. {args.restarts} Janus restarts mid-call", flush=True)
            times = await rejoin_after_restart(server.netns, args.restarts, 8289)
            ok = sum(1 for t in times if t <= 5.0)
            rows.append(("rejoin after Janus returns (max; within 5 s)",
                         f"{max(times):.2f} s; {ok}/{len(times)}", f"≤ 5 s, {len(times)}/{len(times)}"))
        if args.rss_s:
            seconds = 1800.0 if args.soak else args.rss_s
            print(f"3. {seconds:.0f} s in a 4-party call (roombox run as its own process)", flush=True)
            samples = await memory_in_four_party_call(server, seconds)
            if args.samples:
                Path(args.samples).write_text("".join(f"{i},{mb:.1f}\n" for i, mb in enumerate(samples)))
            minute = max(1, min(60, len(samples) // 3))
            growth = statistics.mean(samples[-minute:]) - statistics.mean(samples[:minute])
            rows.append(("terminal RSS in a 4-party call (max)", f"{max(samples):.0f} MB", "≤ 200 MB"))
            rows.append((f"RSS growth over {seconds:.0f} s (last vs first {minute} s)", f"{growth:+.1f} MB",
                         "no growth"))
    table(rows)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--rss-s", type=float, default=30.0)
    parser.add_argument("--soak", action="store_true", help="30 minutes in the 4-party call")
    parser.add_argument("--samples", metavar="CSV", help="write the RSS samples (second, MB) here")
    sys.exit(asyncio.run(main(parser.parse_args())))
