"""``roombox run``: the terminal process (under systemd in production)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from hal.errors import ProfileError
from hal.profile import load_profile
from terminal.app import MeetingSettings, Terminal
from terminal.cli import roombox_version
from terminal.metrics import DEFAULT_LISTEN, TerminalCollector, parse_listen, serve_metrics
from terminal.monitor import DeviceMonitor
from terminal.status_page.server import StatusPage, serve_status_page
from terminal.notify import SystemdNotifier, notify, ping_watchdog, watchdog_interval_s


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the terminal", description=__doc__)
    parser.add_argument("--profile", default="sim", help="hardware profile name or .toml path (default: sim)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: run until SIGTERM/SIGINT)")
    parser.add_argument("--meeting", default=None, metavar="URL",
                        help="the room's standing meeting, e.g. janus+https://HOST/janus?room=1234")
    parser.add_argument("--calendar", default=None, metavar="URL",
                        help="the room calendar: an iCalendar feed or CalDAV collection (http/https)")
    parser.add_argument("--control-socket", default=None, metavar="PATH",
                        help="control socket (default: $ROOMBOX_CONTROL_SOCKET or /run/roombox/control.sock)")
    parser.add_argument("--metrics", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"Prometheus endpoint (default {DEFAULT_LISTEN}, loopback only; 'off' disables)")
    parser.add_argument("--status-page", default="off", metavar="HOST:PORT",
                        help="serve the technician status page (default off; needs a technician code)")
    parser.add_argument("--provisioning", choices=("auto", "on", "off"),
                        default=os.environ.get("ROOMBOX_PROVISIONING", "auto"),
                        help="provision through the provisioning service (default auto: "
                             "only when no meeting or calendar is given locally)")
    parser.add_argument("--state-dir", default=None, metavar="DIR",
                        help="identity and configuration (default: $STATE_DIRECTORY/provisioning "
                             "under systemd, else /var/lib/roombox/provisioning)")
    parser.add_argument("--seed-dir", action="append", default=None, metavar="DIR",
                        help="where to look for provisioning.toml (repeatable; default "
                             "/boot/firmware, /boot, /media/usb)")
    parser.add_argument("--screen", choices=("auto", "on", "off"), default="auto",
                        help="show the room screen on the profile's display (default auto: "
                             "on unless the display is the offscreen test backend)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not args.verbose:
        logging.getLogger("roombox").setLevel(logging.INFO)
    try:
        profile = load_profile(args.profile)
        settings = MeetingSettings.from_args(args)
        for option, value in (("--metrics", args.metrics), ("--status-page", args.status_page)):
            if value != "off":
                parse_listen(value, option)
    except (ProfileError, ValueError) as exc:
        print(f"roombox: {exc}", file=sys.stderr)
        notify(f"STATUS=configuration error: {exc}")
        return 2
    from terminal.malloc import tune_malloc
    tune_malloc()
    metrics = None if args.metrics == "off" else args.metrics
    status_page = None if args.status_page == "off" else args.status_page
    show_screen = args.screen == "on" or (args.screen == "auto" and profile.display.backend != "offscreen")
    return asyncio.run(_run(profile, settings, args, metrics, status_page, show_screen))


async def _run(profile, settings: MeetingSettings, args: argparse.Namespace, metrics: str | None,
               status_page: str | None, show_screen: bool) -> int:
    screen = None
    if show_screen:
        from terminal.screen import RoomScreen
        screen = RoomScreen(profile.display)
    async with screen if screen is not None else contextlib.nullcontext():
        terminal = Terminal(profile, settings, sink=screen.sink if screen else None, screen=screen)
        wants = args.provisioning == "on" or (
            args.provisioning == "auto" and not (settings.meeting_url or settings.calendar_url))
        if wants:
            options = {"state_dir": Path(args.state_dir) if args.state_dir else None}
            if args.seed_dir:
                options["seed_dirs"] = tuple(Path(d) for d in args.seed_dir)
            terminal.enable_provisioning(**options)
        return await serve(terminal, args.duration, metrics, status_page)


async def serve(terminal: Terminal, duration_s: float | None, metrics_listen: str | None = None,
                status_page_listen: str | None = None) -> int:
    """Run the terminal with systemd's notify protocol and watchdog until a signal (or
    ``duration_s``) stops it."""
    stop = asyncio.Event()
    notifier = SystemdNotifier()

    def request_stop() -> None:
        if not stop.is_set():
            notifier.stopping()   # before devices close: systemd shows "deactivating"
            stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    if duration_s is not None:
        loop.call_later(duration_s, request_stop)
    terminal.machine.add_listener(notifier)
    interval_s = watchdog_interval_s()
    monitor = DeviceMonitor(terminal.profile, terminal.post)
    async with asyncio.TaskGroup() as group:
        helpers = [group.create_task(monitor.run(), name="device-monitor")]
        if interval_s:
            helpers.append(group.create_task(ping_watchdog(interval_s), name="watchdog"))
        if metrics_listen:
            collector = TerminalCollector(terminal.status, roombox_version())
            helpers.append(group.create_task(serve_metrics(collector, metrics_listen), name="metrics"))
        if status_page_listen:
            page = StatusPage(terminal.status, terminal.technician, terminal.profile.name)
            host, port = parse_listen(status_page_listen, "--status-page")
            helpers.append(group.create_task(serve_status_page(page, host, port), name="status-page"))
        try:
            await terminal.run(stop)
        finally:
            for task in helpers:
                task.cancel()
    return 0
