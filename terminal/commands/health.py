"""``roombox health``: what a field technician needs in one minute. Asks the running
terminal when there is one, else opens the profile's devices itself. Exit 1 on any failure;
every failure comes with a plain cause and a suggested fix."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from hal.board import open_board
from hal.errors import HalError, ProfileError
from hal.profile import load_profile
from terminal.cli import roombox_version
from terminal.control import default_path, request
from terminal.errors import ControlError
from terminal.health import (Finding, board, network, overall, peripherals, press_test_local,
                             press_test_running, software)

STATUS_TIMEOUT_S = 3.0
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("health", help="check every part of the box, with fixes", description=__doc__)
    parser.add_argument("--profile", default=None,
                        help="hardware profile when no terminal is running (default: the running one, else sim)")
    parser.add_argument("--meeting", action="append", default=[], metavar="URL",
                        help="a conferencing service URL to check (repeatable; also $ROOMBOX_MEETING)")
    parser.add_argument("--service", action="append", default=[], metavar="URL",
                        help="another service to check: provisioning, STUN/TURN (repeatable)")
    parser.add_argument("--control-socket", default=None, help=f"the terminal's socket (default {default_path()})")
    parser.add_argument("--press-test", nargs="?", type=float, const=20.0, default=None, metavar="S",
                        help="ask for each button to be pressed within S seconds (default 20); a running "
                             "terminal counts the presses without joining or muting")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        findings = asyncio.run(collect(args))
    except ProfileError as exc:
        print(f"roombox: {exc}", file=sys.stderr)
        return 2
    ok = overall(findings)
    if args.json:
        print(json.dumps({"ok": ok, "findings": [f.as_dict() for f in findings]}, indent=2, default=str))
    else:
        print_table(findings, ok)
    return 0 if ok else 1


async def running_status(path: str | None) -> dict | None:
    try:
        reply = await request({"command": "status"}, path, timeout_s=STATUS_TIMEOUT_S)
    except ControlError:
        return None
    return reply.get("status") if reply.get("ok") else None


async def collect(args: argparse.Namespace) -> list[Finding]:
    running = await running_status(args.control_socket)
    findings: list[Finding] = []
    if running is None:
        profile = load_profile(args.profile or "sim")
        findings += await peripherals(profile)
        try:
            info = await asyncio.to_thread(lambda: open_board(profile.board).info())
        except HalError as exc:
            info = {}
            findings.append(Finding("board", "board", "fail", str(exc)))
    else:
        findings.append(Finding("peripherals", "devices", "skip",
                                "in use by the running terminal; its device monitor's findings follow"))
        info = running.get("board") or {}
    if getattr(args, "press_test", None) is not None:     # health only; diag bundle shares collect()
        say = lambda text: print(text, file=sys.stderr, flush=True)   # noqa: E731 - stdout may be JSON
        if running is None:
            findings.append(await press_test_local(load_profile(args.profile or "sim"), args.press_test, say))
        else:
            findings.append(await press_test_running(args.control_socket, args.press_test, say))
    findings += board(info)
    findings += await network(service_urls(args, running))
    findings += software(roombox_version(), running)
    return findings


def service_urls(args: argparse.Namespace, running: dict | None) -> dict[str, str]:
    urls = {}
    meetings = list(args.meeting) or [u for u in (os.environ.get("ROOMBOX_MEETING", ""),) if u]
    services = list(args.service) + [u for u in (os.environ.get("ROOMBOX_TURN_URL", ""),) if u]
    if running:
        # The redacted URL keeps host and port, all a reachability check needs.
        meetings += [running[k] for k in ("meeting", "calendar_meeting", "call") if running.get(k)]
        if (running.get("provisioning") or {}).get("service"):
            urls["provisioning"] = running["provisioning"]["service"]
        services += running.get("ice_servers") or []
    for i, url in enumerate(dict.fromkeys(meetings)):
        urls[f"conference{'' if i == 0 else f' {i + 1}'}"] = url
    for i, url in enumerate(dict.fromkeys(services)):
        kind = "TURN" if url.startswith("turn:") else "service"
        urls[f"{kind}{'' if i == 0 else f' {i + 1}'}"] = url
    return urls


def print_table(findings: list[Finding], ok: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="roombox health")
    for column in ("section", "check", "status", "detail", "what to do"):
        table.add_column(column, overflow="fold")
    for f in findings:
        table.add_row(f.section, f.check, f"[{STYLE[f.status]}]{f.status}[/]", escape(f.detail), escape(f.fix))
    console = Console()
    console.print(table)
    console.print("[green]healthy[/]" if ok else "[bold red]needs attention: see 'what to do'[/]")
