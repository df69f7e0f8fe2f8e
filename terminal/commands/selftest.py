"""``roombox selftest``: exercise every device of a profile; exit 1 if anything fails."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

from hal.errors import ProfileError
from hal.profile import load_profile
from terminal.selftest import Check, run_selftest, summarise

DEFAULT_PROFILE = "sim"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("selftest", help="test every device of a hardware profile",
                                   description=__doc__)
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="profile name or .toml path (default: sim)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        print(f"roombox: {exc}", file=sys.stderr)
        return 2
    checks = asyncio.run(run_selftest(profile))
    ok = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"profile": profile.name, "ok": ok, "devices": [c.as_dict() for c in checks]}, indent=2))
    else:
        print_table(profile.name, checks)
    return 0 if ok else 1


def print_table(profile_name: str, checks: list[Check]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"roombox selftest — profile {profile_name}")
    for column in ("device", "backend", "result", "measured", "reason"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(check.device, check.backend,
                      "[green]pass[/]" if check.ok else "[red]FAIL[/]",
                      escape(summarise(check)), escape(check.reason))
    Console().print(table)
