"""Logging: structured journald entries under systemd, plain readable stderr otherwise.

Messages start with their component (``camera: falling back to v4l2 (...)``); the journal
gets that as COMPONENT=, plus STATE=, DEVICE= and CALL_ID= when a log call passes them in
``extra={"state": ..., "device": ..., "call_id": ...}``, so a technician can run
``journalctl -u roombox COMPONENT=camera``.
"""
from __future__ import annotations

import logging
import os
import re
import sys

_COMPONENT = re.compile(r"^([a-z][a-z0-9_-]{1,20}): ")
STRUCTURED_FIELDS = ("state", "device", "call_id")


class StructuredFields(logging.Filter):
    """Adds the upper-case journal fields to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        match = _COMPONENT.match(record.getMessage())
        record.COMPONENT = match.group(1) if match else record.name.rsplit(".", 1)[-1]
        for name in STRUCTURED_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                setattr(record, name.upper(), str(value))
        return True


def is_journal_stderr() -> bool:
    """True when stderr is connected to journald (systemd sets JOURNAL_STREAM to its dev:ino)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in stream:
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{info.st_dev}:{info.st_ino}"


def setup_logging(level: int) -> logging.Handler:
    """Install one handler on the root logger and return it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if is_journal_stderr():
        from systemd.journal import JournalHandler

        handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER="roombox")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(StructuredFields())
    root.addHandler(handler)
    root.setLevel(level)
    return handler
