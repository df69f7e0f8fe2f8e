"""The local control socket: a Unix socket (owner and the ``roombox`` group only) speaking
JSON lines. Each request line is an object with a ``command``; each gets one reply line.

    {"command": "status"}                       → {"ok": true, "status": {...}}
    {"command": "join", "url": "janus+http://…"} → {"ok": true, "state": "joining", ...}
    {"command": "leave" | "mute" | "unmute"}     → {"ok": true, "state": ..., "muted": ...}
    {"command": "provision", "url": "https://…", "ca_sha256": "…"}
                                                → {"ok": true, "service": "https://…"}
    {"command": "technician-code"}              → {"ok": true, "code": "ABCDE-FGHJK", "expires_at": …}
    {"command": "press-test", "seconds": 20}     → {"ok": true, "presses": {"join": 3, ...}}

Bad requests get ``{"ok": false, "error": "..."}`` naming what was wrong; the connection
stays usable. ``request()`` is the client other commands call.
"""
from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from terminal.errors import ControlError
from terminal.state import Event

log = logging.getLogger("roombox.terminal.control")

DEFAULT_PATH = "/run/roombox/control.sock"
ENV_PATH = "ROOMBOX_CONTROL_SOCKET"
GROUP = "roombox"
MAX_LINE_BYTES = 64 * 1024
REQUEST_TIMEOUT_S = 5.0
IDLE_CLIENT_TIMEOUT_S = 60.0
COMMANDS = {"status": None, "join": "join_requested", "leave": "leave_requested",
            "mute": "mute_requested", "unmute": "unmute_requested",
            "provision": None, "technician-code": None, "press-test": None}
MAX_PRESS_TEST_S = 120
TECHNICIAN_CODE_VALID_S = 900


def default_path() -> str:
    return os.environ.get(ENV_PATH) or DEFAULT_PATH


class ControlServer:
    """Serves ``terminal`` (a terminal.app.Terminal) on ``path`` until cancelled; removes the
    socket file afterwards. Mode 0660, group ``roombox`` when that group exists."""

    def __init__(self, path: str, terminal: Any) -> None:
        self.path = Path(path)
        self.terminal = terminal
        self.requests = 0
        self.rejected = 0
        self.error = ""
        self.ready = asyncio.Event()     # set once the socket has its final permissions

    async def serve(self) -> None:
        try:
            await self._prepare()
            server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE_BYTES)
        except (ControlError, OSError) as exc:
            # The box still works from its buttons; the CLI commands will say they cannot reach it.
            log.warning("control: not listening on %s (%s)", self.path, exc)
            self.error = str(exc)
            return
        try:
            self._restrict()
            self.ready.set()
            log.info("control: listening on %s", self.path)
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _prepare(self) -> None:
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o750, parents=True)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ControlError(f"control: {self.path} exists and is not a socket; not replacing it")
            try:
                async with asyncio.timeout(1):
                    _, writer = await asyncio.open_unix_connection(str(self.path))
                writer.close()
                raise ControlError(f"control: another terminal is listening on {self.path}")
            except (ConnectionRefusedError, FileNotFoundError, TimeoutError):
                self.path.unlink()    # stale, from a terminal that died

    def _restrict(self) -> None:
        try:
            gid = grp.getgrnam(GROUP).gr_gid
            os.chown(self.path, -1, gid)
        except (KeyError, PermissionError) as exc:
            log.info("control: socket stays in the owner's group (%s)", exc)
        os.chmod(self.path, 0o660)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_CLIENT_TIMEOUT_S):
                        line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await self._reply(writer, _error(f"request longer than {MAX_LINE_BYTES} bytes"))
                    return
                if not line:
                    return
                await self._reply(writer, await self.handle_line(line))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle_line(self, line: bytes) -> dict:
        """One request line → its reply (never raises for bad input)."""
        self.requests += 1
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return self._reject(f"request is not JSON ({exc})")
        if not isinstance(message, dict):
            return self._reject(f"request must be a JSON object, got {type(message).__name__}")
        command = message.get("command")
        if command not in COMMANDS:
            return self._reject(f"command must be one of {', '.join(COMMANDS)}, got {command!r}")
        if command == "status":
            return {"ok": True, "status": self.terminal.status()}
        if command == "provision":
            return self._provision(message)
        if command == "press-test":
            return self._press_test(message)
        if command == "technician-code":
            # Whoever can reach this socket is on the box's shell as roombox or root.
            code, expires_at = self.terminal.technician.issue_local(TECHNICIAN_CODE_VALID_S)
            log.info("control: issued a local technician code (valid %d s)", TECHNICIAN_CODE_VALID_S)
            return {"ok": True, "code": code, "expires_at": expires_at}
        data: dict[str, Any] = {}
        if command == "join" and message.get("url") is not None:
            url = message["url"]
            if not isinstance(url, str) or "://" not in url:
                return self._reject(f"join: url must be a meeting URL string, got {url!r}")
            data["url"] = url
        await self.terminal.submit(Event(COMMANDS[command], data))
        machine = self.terminal.machine
        return {"ok": True, "state": str(machine.state), "reason": machine.reason,
                "muted": machine.is_muted, "notices": list(machine.notices)}

    def _provision(self, message: dict) -> dict:
        link = self.terminal.provisioning
        if link is None:
            return self._reject("provision: this terminal runs with a local meeting and "
                                "provisioning off (roombox run --provisioning on)")
        url, pin = message.get("url"), message.get("ca_sha256")
        if not isinstance(url, str) or not isinstance(pin, str):
            return self._reject(f"provision: url and ca_sha256 must be strings, got {url!r} and {pin!r}")
        try:
            location = link.set_typed_location(url, pin)
        except ValueError as exc:      # DiscoveryError names the key and the value
            return self._reject(f"provision: {exc}")
        return {"ok": True, "service": location.url,
                "note": "used when no seed file or DNS-SD record names a service"}

    def _press_test(self, message: dict) -> dict:
        seconds = message.get("seconds", 20)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 1 <= seconds <= MAX_PRESS_TEST_S:
            return self._reject(f"press-test: seconds must be a number from 1 to {MAX_PRESS_TEST_S}, got {seconds!r}")
        buttons = self.terminal.buttons
        if buttons is None:
            return self._reject("press-test: the terminal has no buttons open")
        self.terminal.start_press_test(float(seconds))
        return {"ok": True, "presses": dict(buttons.presses)}

    def _reject(self, why: str) -> dict:
        self.rejected += 1
        log.warning("control: rejected a request (%s)", why)
        return _error(why)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict) -> None:
        writer.write(json.dumps(reply, default=str).encode() + b"\n")
        await writer.drain()


def _error(why: str) -> dict:
    return {"ok": False, "error": f"control: {why}"}


async def request(message: dict, path: str | None = None, timeout_s: float = REQUEST_TIMEOUT_S) -> dict:
    """Send one request to the running terminal and return its reply.

    Raises ControlError if the socket is missing, refuses or does not answer in time."""
    path = path or default_path()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(path, limit=16 * MAX_LINE_BYTES)
            try:
                writer.write(json.dumps(message).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        raise ControlError(f"control: no answer from {path} within {timeout_s} s") from None
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ControlError(f"control: cannot reach the terminal at {path} ({exc.strerror}); "
                           "is `roombox run` running?") from None
    except PermissionError:
        raise ControlError(f"control: permission denied on {path}; "
                           f"run as the terminal's user or a member of group '{GROUP}'") from None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise ControlError(f"control: the terminal answered {line[:80]!r}, not JSON") from None
