"""Speech under random UDP loss through a real Janus: ours (media.audio FEC encoder and
Opus playout) next to stock aiortc 1.16, per loss level, on one leg.

    .venv/bin/python bench/loss_audio.py                          # 0..80 %, subscriber leg
    .venv/bin/python bench/loss_audio.py --leg pub --seconds 30 --loss 10,20,50 --runs 3

Needs root (a network namespace for Janus, nftables for the loss), espeak-ng, and the
'bench' extra (pesq, scipy) plus pystoi. Each call: loopback Janus 1.1.2 VideoRoom, an
aiortc publisher sending espeak-ng speech in real time, an aiortc subscriber; loss applied
with nftables (``numgen random``) on the chosen leg's UDP port, both directions. Figures:
STOI and PESQ-WB of the received speech against what was sent, the share of sent 20 ms
frames with no decoded audio, and the median latency from encoder input to decoded frame
(the playout delay included; stock's includes its 4-packet prefetch). The harness is
tests/media/audio/speech_call.py, the same one the end-to-end test uses.
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
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from tests import janus as J  # noqa: E402
from media.audio.opus_sender import MIN_EXPECTED_LOSS_PCT  # noqa: E402
from tests.media.audio.speech_call import speech_call  # noqa: E402

LEVELS = (0, 1, 2, 5, 10, 20, 30, 50, 80)
_rooms = itertools.count(4200)
_server: J.JanusServer | None = None


def _janus() -> J.JanusServer:
    """One Janus for the whole run, in its own namespace (stopped at exit by main())."""
    global _server
    if _server is None:
        netns = f"roombox-lossaudio-{os.getpid()}"
        J.create_netns(netns)
        _server = J.start_janus(netns)
    return _server


def _stop_janus() -> None:
    global _server
    if _server is not None:
        J.stop_janus(_server)
        J.delete_netns(_server.netns)
        _server = None


async def measure_speech(loss_pct: float, leg: str, duration_s: float, stack: str = "ours",
                         min_loss_pct: int = MIN_EXPECTED_LOSS_PCT) -> dict:
    """One call with ``loss_pct`` % random UDP loss on ``leg`` ("pub": publisher↔Janus,
    "sub": Janus↔subscriber), ``duration_s`` of speech, ``stack`` "ours" or "stock".
    Returns stoi, pesq_wb (None below half the frames), missing (ratio of sent 20 ms
    frames), latency_ms (median, encoder input to decoded frame), and the playout/sender
    counters for ours. ``min_loss_pct``: our sender's expected-loss floor (35 sends three
    copies whatever the reports say). Starts a loopback Janus on first use (needs root)."""
    import aioice.ice
    aioice.ice.get_host_addresses = J.only_loopback_addresses
    server = _janus()
    with J.netns_entered(server.netns):
        return await speech_call(server, loss_pct, leg, duration_s, stack, next(_rooms), with_pesq=True,
                                 min_loss_pct=min_loss_pct)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leg", choices=("pub", "sub"), default="sub")
    parser.add_argument("--seconds", type=float, default=20.0, help="speech per call")
    parser.add_argument("--loss", default=",".join(map(str, LEVELS)), help="comma-separated %%")
    parser.add_argument("--runs", type=int, default=1, help="calls per level and stack (median shown)")
    parser.add_argument("--stacks", default="ours,stock")
    parser.add_argument("--json", type=Path, help="append every call's result here")
    parser.add_argument("--min-loss", type=int, default=MIN_EXPECTED_LOSS_PCT,
                        help="our sender's expected-loss floor, %% (35: three copies always)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("loss_audio bench: needs root (network namespace, nftables)")
    # A plain SIGTERM would skip the finally below and leave Janus and its namespace behind;
    # handled like Ctrl-C, asyncio.run() cancels the call and the finally cleans up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stacks = args.stacks.split(",")
    started = time.monotonic()
    print(f"# speech under random UDP loss, leg {args.leg}, {args.seconds:.0f} s of speech per call, "
          f"{args.runs} run(s), median shown; our expected-loss floor {args.min_loss} %")
    print(f"{'loss %':>6} | " + " | ".join(f"{s:>5} STOI  PESQ  miss%  lat ms" for s in stacks))
    try:
        for level in (float(x) for x in args.loss.split(",")):
            cells = []
            for stack in stacks:
                runs = [asyncio.run(measure_speech(level, args.leg, args.seconds, stack, args.min_loss))
                        for _ in range(args.runs)]
                if args.json:
                    with args.json.open("a") as out:
                        for r in runs:
                            out.write(json.dumps(r) + "\n")
                med = {k: (statistics.median(v) if (v := [r[k] for r in runs if r[k] is not None]) else None)
                       for k in ("stoi", "pesq_wb", "missing", "latency_ms")}
                cells.append(f"{'':>5} {_fmt(med['stoi'], '.3f')} {_fmt(med['pesq_wb'], '5.2f')} "
                             f"{_fmt(med['missing'] and 100 * med['missing'], '6.1f')} "
                             f"{_fmt(med['latency_ms'], '7.0f')}")
            print(f"{level:>6g} | " + " | ".join(cells), flush=True)
    finally:
        _stop_janus()
    print(f"# {time.monotonic() - started:.0f} s wall")


if __name__ == "__main__":
    main()
