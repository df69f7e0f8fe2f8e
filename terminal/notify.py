"""Talking to systemd: sd_notify (READY, STATUS, WATCHDOG, STOPPING, RELOADING) through
systemd-python. Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op.

The watchdog is pinged from a task on the event loop, so a loop that stops turning stops
the pings and systemd restarts the process (WatchdogSec in systemd/roombox.service).
"""
from __future__ import annotations

import asyncio
import logging
import os

from systemd import daemon

from terminal.state import State, StateMachine

log = logging.getLogger("roombox.notify")

READY_STATES = (State.IDLE, State.UNPROVISIONED, State.DEGRADED)


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not running under systemd."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    return bool(daemon.notify(message))


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec for this process, or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


class SystemdNotifier:
    """A state-machine listener: READY=1 once the box is first usable (idle, unprovisioned,
    or degraded with a reason it will show), STATUS=<state: reason> on every change."""

    def __init__(self) -> None:
        self.is_ready = False
        self._last_status = ""

    def __call__(self, machine: StateMachine) -> None:
        status = f"{machine.state}: {machine.reason}"
        if machine.is_muted:
            status += " (muted)"
        if not self.is_ready and machine.state in READY_STATES:
            self.is_ready = True
            notify(f"READY=1\nSTATUS={status}")
        elif status != self._last_status:
            notify(f"STATUS={status}")
        self._last_status = status

    @staticmethod
    def stopping() -> None:
        notify("STOPPING=1\nSTATUS=stopping")

    @staticmethod
    def reloading(what: str) -> None:
        notify(f"RELOADING=1\nSTATUS=applying {what}")

    @staticmethod
    def reloaded(status: str) -> None:
        notify(f"READY=1\nSTATUS={status}")


async def ping_watchdog(interval_s: float) -> None:
    """WATCHDOG=1 every ``interval_s`` for as long as the event loop keeps running."""
    log.info("notify: watchdog ping every %.1f s", interval_s)
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
