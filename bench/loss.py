"""Video under random UDP loss through a real Janus: ours next to stock aiortc 1.16.

    .venv/bin/python bench/loss.py                                   # 0,10,20 %, both legs
    .venv/bin/python bench/loss.py --levels 10 --legs sub --seconds 300 --stacks ours
    .venv/bin/python bench/loss.py --speech                          # + bench/loss_audio.py
    .venv/bin/python bench/loss.py --levels 0 --legs pub --capacity 500,1000 --seconds 120

Needs root (a network namespace for Janus, nftables for the loss: this kernel has no netem).
The call and its figures are tests/media/net/video_call.py's ``call()`` and ``score()``:
per cell, the call runs ``--warmup`` s without loss, then ``percent`` % of UDP packets on one
leg (publisher↔Janus or Janus↔subscriber) are dropped at random both ways for ``--seconds``.
bad% = 100 ms windows without a new, fresh (≤ 400 ms old), intact frame (stamp reads,
thumbnail within ``--psnr-db`` of the camera's frame); longest = longest run of such windows;
fps = new intact fresh frames per second; p50 = median capture→decode age.
``--capacity`` adds a bottleneck on what the leg's peer sends (``pub``: the publisher's
uplink; an nftables policer with a 100 ms burst, tests/loss.py), congestion the rate
control must find; the ``sent``/``target`` columns are the publisher's at the end (ours).
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
import json  # noqa: E402
import os  # noqa: E402
from typing import Iterator  # noqa: E402

from tests import janus as J  # noqa: E402
from tests.media.net.video_call import BITRATE_BPS, FPS, SIZES, call  # noqa: E402


# ---- main ---------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_row(r: dict) -> None:
    usable = r["fps"] >= 15 and r["bad_pct"] <= 5
    target = (r.get("sender") or {}).get("target_bps")
    print(f"{r['stack']:5} {r['leg']:3} {r['percent']:5.0f} {_fmt(r.get('capacity_kbps'), '6.0f')} "
          f"{r['seconds']:5.0f} {r['bad_pct']:8.1f} {r['longest_freeze_s']:7.1f} {r['fps']:6.1f} "
          f"{_fmt(r['age_p50_ms'], '7.0f')} {r['corrupt_frames']:7d} {r['dropped']:7d} "
          f"{_fmt(target and target / 1000, '7.0f')} {r['load']:5.1f}  {'yes' if usable else 'no'}",
          flush=True)


@contextlib.contextmanager
def janus_in_own_netns(name: str) -> Iterator[J.JanusServer]:
    """A Janus on loopback in a fresh network namespace, the calling thread inside it (the
    loss rules live there; aiortc, and Chromium started from here, gather loopback only)."""
    import aioice.ice
    aioice.ice.get_host_addresses = J.only_loopback_addresses
    netns = f"{name}-{os.getpid()}"
    J.create_netns(netns)
    server = J.start_janus(netns)
    try:
        with J.netns_entered(netns):
            yield server
    finally:
        J.stop_janus(server)
        J.delete_netns(netns)


async def main_async(args) -> list[dict]:
    results = []
    with janus_in_own_netns("roombox-lossbench") as server:
        print("stack leg   loss cap kb  secs  bad%(fz) longest    fps  p50 ms corrupt dropped "
              "target kb load  usable")
        for percent in args.levels:
            for capacity in args.capacity:
                for leg in args.legs:
                    for stack in args.stacks:
                        r = await call(server, stack, leg, percent, args.seconds, args.warmup,
                                       args.size, args.psnr_db, capacity_kbps=capacity)
                        r["capacity_kbps"] = capacity
                        results.append(r)
                        print_row(r)
    return results


async def speech(args, measure_speech) -> list[dict]:
    """Speech columns from bench/loss_audio.py's ``measure_speech`` (it runs its own Janus)."""
    rows = []
    for percent in args.levels:
        for leg in args.legs:
            for stack in args.stacks:
                rows.append(dict(await measure_speech(percent, leg, args.seconds, stack),
                                 stack=stack, leg=leg, percent=percent))
    return rows


def add_grid_arguments(parser: argparse.ArgumentParser, levels: str, seconds: float) -> None:
    """The cells of a loss bench: loss levels × legs × stacks, their length and picture size
    (also bench/loss_chromium.py's)."""
    parser.add_argument("--levels", default=levels, type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--legs", default="sub,pub", type=lambda s: s.split(","))
    parser.add_argument("--stacks", default="ours,stock", type=lambda s: s.split(","))
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--size", choices=SIZES, default="360p")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_grid_arguments(parser, levels="0,10,20", seconds=60.0)
    parser.add_argument("--psnr-db", type=float, default=22.0)
    parser.add_argument("--capacity", default=[None], metavar="KBPS,...",
                        type=lambda s: [float(x) for x in s.split(",")],
                        help="a bottleneck (kbit/s) on each leg's sender, one cell per value")
    parser.add_argument("--json", help="also write every result (with receiver/sender status) here")
    parser.add_argument("--speech", action="store_true",
                        help="also run bench/loss_audio.py's measure_speech for the same cells")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/loss.py: needs root (network namespace, nftables)")
    print(f"video {args.size}@{FPS} {BITRATE_BPS / 1e6:.1f} Mbit/s start, {args.seconds:.0f} s "
          f"per cell after {args.warmup:.0f} s without loss; load avg at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    results = asyncio.run(main_async(args))
    if args.speech:
        import importlib.util
        spec = importlib.util.spec_from_file_location("bench_loss_audio", BENCH_DIR / "loss_audio.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        try:
            rows = asyncio.run(speech(args, module.measure_speech))
        finally:
            module._stop_janus()          # its Janus and namespace
        print("speech (bench/loss_audio.py): stack leg loss  STOI  PESQ-WB  missing%  latency ms")
        for row in rows:
            print(f"speech {row['stack']:5} {row['leg']:3} {row['percent']:4.0f} "
                  f"{_fmt(row.get('stoi'), '5.3f')} {_fmt(row.get('pesq_wb'), '7.2f')} "
                  f"{_fmt(row.get('missing') and 100 * row['missing'], '8.1f')} "
                  f"{_fmt(row.get('latency_ms'), '10.0f')}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
