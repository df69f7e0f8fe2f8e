"""``roombox provision URL --ca-sha256 PIN`` and ``roombox technician-code``: things an admin
or technician at the box's shell asks the running terminal, through its control socket."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from terminal.control import request
from terminal.errors import ControlError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "provision", help="point an unprovisioned box at its provisioning service",
        description="Use this provisioning service when no provisioning.toml seed and no "
                    "DNS-SD record names one. The service's CA must match the fingerprint.")
    parser.add_argument("url", help="the service, e.g. https://prov.example.org:8443")
    parser.add_argument("--ca-sha256", required=True, metavar="HEX",
                        help="SHA-256 fingerprint of the service's CA certificate "
                             "(`roombox server init` prints it)")
    _socket_option(parser)
    parser.set_defaults(func=provision)
    parser = subparsers.add_parser(
        "technician-code", help="a 15-minute code for the technician status page",
        description="Issue a one-off code that opens the technician status page for 15 minutes. "
                    "Needs access to the control socket (the roombox user or group).")
    _socket_option(parser)
    parser.set_defaults(func=technician_code)


def _socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=None, metavar="PATH",
                        help="control socket (default: $ROOMBOX_CONTROL_SOCKET or /run/roombox/control.sock)")


def _ask(message: dict[str, Any], path: str | None) -> tuple[int, dict[str, Any]]:
    """(exit status, reply): 3 when the terminal cannot be reached, 2 when it refused."""
    try:
        reply = asyncio.run(request(message, path))
    except ControlError as exc:
        print(f"roombox: {exc}", file=sys.stderr)
        return 3, {}
    if not reply.get("ok"):
        print(f"roombox: {reply.get('error', reply)}", file=sys.stderr)
        return 2, reply
    return 0, reply


def provision(args: argparse.Namespace) -> int:
    code, reply = _ask({"command": "provision", "url": args.url, "ca_sha256": args.ca_sha256}, args.socket)
    if code == 0:
        print(f"provisioning service set to {reply['service']} ({reply['note']})")
    return code


def technician_code(args: argparse.Namespace) -> int:
    code, reply = _ask({"command": "technician-code"}, args.socket)
    if code:
        return code
    until = time.strftime("%H:%M", time.localtime(reply["expires_at"]))
    print(f"technician code: {reply['code']} (valid until {until})")
    return 0
