"""Errors of the terminal package: one root, leaves that also derive from a fitting built-in."""
from __future__ import annotations


class TerminalError(Exception):
    """Root of the terminal's errors."""


class ControlError(TerminalError, OSError):
    """The control socket could not be reached or answered badly."""


class CalendarError(TerminalError, ValueError):
    """A room calendar could not be fetched or parsed."""
