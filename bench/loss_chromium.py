"""Video under random UDP loss through a real Janus, with headless Chromium as the viewer.

    sudo .venv/bin/python bench/loss_chromium.py                          # 0,10,20,30 %, both legs
    sudo .venv/bin/python bench/loss_chromium.py --levels 10 --legs sub --seconds 300 --stacks ours

The publisher is roombox's sender with its default config (``ours``) or stock aiortc 1.16
(``stock``), as in bench/loss.py (tests/media/net/video_call.py); the viewer is Debian's
Chromium, headless, subscribed through bench/chromium_sub.py. Per cell: ``--warmup`` s
without loss, then ``percent`` % of UDP packets on one leg (``pub`` = publisher↔Janus,
``sub`` = Janus↔Chromium, by Janus's port for this viewer) dropped at random both ways for
``--seconds``. From the page's log of presented frames (their stamps read back in the page):
bad % = 100 ms windows without a new, fresh (≤ 400 ms old) frame with a readable stamp, as
in bench/loss.py; a frame whose stamp fails its check counts as corrupt (no PSNR here).
Chromium's own counters next to it: freezes (a frame interval above max(3 × the average,
average + 150 ms)) and their total time, frames dropped, NACKs and PLIs sent, packets lost.
Needs root (network namespace, nftables) and the chromium package.
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/array.py would shadow the standard library's array module (see bench/video.py).
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402

from bench.chromium_sub import candidate_ports, chromium_binary, chromium_subscriber  # noqa: E402
from bench.loss import add_grid_arguments, janus_in_own_netns  # noqa: E402
from tests import janus as J  # noqa: E402
from tests.loss import clear_udp_loss, dropped_packets, leg_port, set_udp_loss  # noqa: E402
from tests.media.net.video_call import FPS, _publish, score, stamped_camera  # noqa: E402

_rooms = itertools.count(4100)
PAGE_MARGIN_S = 2.0          # the page measures a little past the scored span
CHROMIUM_STATS = ("freezeCount", "totalFreezesDuration", "framesDropped", "nackCount", "pliCount",
                  "packetsLost")


def frame_events(frame_log: list[list[float]], start: float,
                 end: float) -> list[tuple[float, int | None, float, float]]:
    """The page's [presented ms, counter or -1, age ms] rows within [start, end) as score()'s
    events: readable stamps pass any PSNR bound (none is judged in the browser), unreadable
    ones are corrupt."""
    return [(ms / 1000, None if counter < 0 else int(counter), math.inf if counter >= 0 else 0.0, age)
            for ms, counter, age in frame_log if start <= ms / 1000 < end]


async def cell(server: J.JanusServer, stack: str, leg: str, percent: float, seconds: float,
               warmup_s: float, size: str) -> dict:
    camera = await stamped_camera(size)
    client = J.JanusClient(server.url)
    room = next(_rooms)
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    span: dict[str, float] = {}
    try:
        async with client.session(), contextlib.AsyncExitStack() as ctx, asyncio.TaskGroup() as tasks:
            await J.create_room(client, room)
            feed, pub = await _publish(stack, camera, client, room, publisher, ctx)
            handle = await client.attach()

            async def lossy_after_warmup(ports: tuple[int, ...]) -> None:
                await asyncio.sleep(warmup_s)
                span["dropped0"] = dropped_packets(server.netns)
                if percent > 0:
                    set_udp_loss(server.netns, percent, port=ports)
                span["start"] = time.monotonic()

            async def on_answer(offer: str, answer: str) -> None:
                # The viewer leg by Janus's port for it (its offer's candidates).
                ports = candidate_ports(offer) if leg == "sub" else (leg_port(publisher),)
                if not ports:
                    raise RuntimeError(f"Janus offered no UDP candidates:\n{offer}")
                span["ports"] = ports
                tasks.create_task(lossy_after_warmup(ports))

            load0 = os.getloadavg()[0]
            measured = await chromium_subscriber(client, handle, room, feed,
                                                 warmup_s + seconds + PAGE_MARGIN_S, on_answer=on_answer)
            dropped = dropped_packets(server.netns) - span.get("dropped0", 0) if percent > 0 else 0
            clear_udp_loss(server.netns)
            sender_status = pub["status"]()
    finally:
        clear_udp_loss(server.netns)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await publisher.close()
        camera.close()
    if "start" not in span:
        raise RuntimeError("the page finished before the loss started (Chromium never answered?)")
    start, end = span["start"], span["start"] + seconds
    result = score(frame_events(measured["frame_log"], start, end), start, end, 0.0)
    result.update(stack=stack, leg=leg, percent=percent, seconds=seconds, dropped=dropped,
                  load=round((load0 + os.getloadavg()[0]) / 2, 2), chromium=measured["stats"],
                  unreadable=measured["unreadable"], sender=sender_status)
    return result


def print_row(r: dict) -> None:
    usable = r["fps"] >= 15 and r["bad_pct"] <= 5
    c = r["chromium"]
    print(f"{r['stack']:5} {r['leg']:3} {r['percent']:5.0f} {r['seconds']:5.0f} {r['bad_pct']:8.1f} "
          f"{r['longest_freeze_s']:7.1f} {r['fps']:6.1f} {r['age_p50_ms'] or 0:7.0f} {r['corrupt_frames']:7d}"
          f"  {c.get('freezeCount') or 0:7d} {c.get('totalFreezesDuration') or 0:8.1f} "
          f"{c.get('framesDropped') or 0:7d} {c.get('nackCount') or 0:6d} {c.get('pliCount') or 0:5d} "
          f"{c.get('packetsLost') or 0:7d} {r['load']:5.1f}  {'yes' if usable else 'no'}", flush=True)


async def main_async(args: argparse.Namespace) -> list[dict]:
    """Every cell; a cell that fails is printed and kept with its error, the others go on;
    ``--json`` is rewritten after each cell."""
    results = []
    with janus_in_own_netns("roombox-lossbench-cr") as server:   # Chromium starts in it too
        print("stack leg   loss  secs  bad%(fz) longest    fps  p50 ms corrupt"
              "  freezes freeze s fdropped  nacks  plis  pktlost  load  usable")
        for percent in args.levels:
            for leg in args.legs:
                for stack in args.stacks:
                    try:
                        r = await cell(server, stack, leg, percent, args.seconds, args.warmup, args.size)
                    except Exception as exc:   # one broken cell must not lose the run
                        results.append(dict(stack=stack, leg=leg, percent=percent, error=repr(exc)))
                        print(f"{stack:5} {leg:3} {percent:5.0f}  failed: {exc!r}", flush=True)
                    else:
                        results.append(r)
                        print_row(r)
                    if args.json:
                        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser, levels="0,10,20,30", seconds=120.0)
    parser.add_argument("--json", help="also write every result (with the sender's status) here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/loss_chromium.py: needs root (network namespace, nftables)")
    if chromium_binary() is None:
        sys.exit("bench/loss_chromium.py: needs chromium (apt-get install chromium)")
    print(f"video {args.size}@{FPS} to headless Chromium, {args.seconds:.0f} s per cell after "
          f"{args.warmup:.0f} s without loss; load avg at start {os.getloadavg()[0]:.2f}", flush=True)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
