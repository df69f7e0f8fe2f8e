"""``roombox diag bundle``: a tarball for a support ticket (secrets masked, no media)."""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

from hal.errors import ProfileError
from hal.profile import load_profile
from terminal.commands.health import collect, running_status
from terminal.diag import build_bundle_async


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("diag", help="diagnostics for support", description=__doc__)
    sub = parser.add_subparsers(dest="diag_command", metavar="COMMAND", required=True)
    bundle = sub.add_parser("bundle", help="write a diagnostics tarball")
    bundle.add_argument("--out", default=None, help="file to write (default: ./roombox-diag-HOST-TIME.tar.gz)")
    bundle.add_argument("--profile", default=None, help="hardware profile when no terminal runs (default: sim)")
    bundle.add_argument("--control-socket", default=None)
    bundle.set_defaults(func=main, meeting=[], service=[], json=True)


def main(args: argparse.Namespace) -> int:
    out = Path(args.out or f"roombox-diag-{socket.gethostname()}-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz")
    try:
        path = asyncio.run(make(args, out))
    except ProfileError as exc:
        print(f"roombox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"roombox: cannot write {out} ({exc.strerror})", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size // 1024 + 1} KiB); attach it to the support ticket")
    return 0


async def make(args: argparse.Namespace, out: Path) -> Path:
    running = await running_status(args.control_socket)
    profile = load_profile((running or {}).get("profile") or args.profile or "sim")
    findings = await collect(args)
    return await build_bundle_async(out, profile=profile, running=running,
                                    health=[f.as_dict() for f in findings])
