"""The ``roombox`` command line.

Each command group lives in its own module with ``register(subparsers)``, which adds its
sub-commands and sets ``func`` (a callable taking the parsed args and returning an exit
status) on each. Modules are imported lazily by name so that ``roombox --version`` never
pays for aiortc, PyAV or the provisioning service.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from terminal.logs import setup_logging

# Modules that contribute commands, in the order their commands appear in --help.
COMMAND_MODULES = (
    "terminal.commands.run",
    "terminal.commands.demo",
    "terminal.commands.call",
    "terminal.commands.box",
    "terminal.commands.hw",
    "terminal.commands.selftest",
    "terminal.commands.health",
    "terminal.commands.diag",
    "provisioning.cli",
    "media.audio.cli",
)


def roombox_version() -> str:
    try:
        return version("roombox")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="roombox", description="Open-source firmware for meeting-room boxes.")
    parser.add_argument("--version", action="version", version=f"roombox {roombox_version()}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging((logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
