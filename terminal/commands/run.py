"""``roombox run``: the terminal process (under systemd in production)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from hal.errors import ProfileError
from hal.profile import load_profile
from terminal.app import Terminal


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the terminal", description=__doc__)
    parser.add_argument("--profile", default="sim", help="hardware profile name or .toml path (default: sim)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until SIGTERM/SIGINT)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not args.verbose:
        logging.getLogger("roombox").setLevel(logging.INFO)
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"roombox: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve(Terminal(profile), args.duration))


async def serve(terminal: Terminal, duration_s: float | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if duration_s is not None:
        loop.call_later(duration_s, stop.set)
    await terminal.run(stop)
    return 0
