"""Signed commands on the box: verified, run once by id, refused when expired or replayed."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import crypto
from ..errors import CommandRejected, ConfigRejected
from ..schema import COMMAND_TYP, MAX_DOCUMENT_BYTES, Command, parse_command_payload

MAX_REMEMBERED = 1000


class CommandGate:
    """Checks commands and remembers the ids already run (persisted until they expire)."""

    def __init__(self, state_dir: Path, serial: str, config_key_pem: bytes, clock=time.time):
        self._path = Path(state_dir) / "commands-seen.json"
        self.serial = serial
        self._key = config_key_pem
        self._clock = clock
        try:
            self._seen: dict[str, int] = json.loads(self._path.read_text())
        except FileNotFoundError:
            self._seen = {}

    def verify(self, token: str) -> Command:
        """A command this box should run; raises ``CommandRejected`` saying why not."""
        if len(token.encode()) > MAX_DOCUMENT_BYTES:
            raise CommandRejected(f"command must be at most {MAX_DOCUMENT_BYTES} bytes")
        try:
            cmd = parse_command_payload(crypto.verify_document(token, self._key, COMMAND_TYP))
        except (ValueError, ConfigRejected) as exc:
            raise CommandRejected(f"command refused: {exc}") from None
        if cmd.serial != self.serial:
            raise CommandRejected(f"command {cmd.id} is for {cmd.serial!r}, not {self.serial!r}")
        now = int(self._clock())
        if cmd.expires_at <= now:
            raise CommandRejected(f"command {cmd.id} ({cmd.kind}) expired at {cmd.expires_at} "
                                  f"(now {now})")
        if cmd.id in self._seen:
            raise CommandRejected(f"command {cmd.id} ({cmd.kind}) already ran (replay)")
        return cmd

    def mark_run(self, cmd: Command) -> None:
        """Record ``cmd`` as run; ids are forgotten once the command could no longer verify."""
        now = int(self._clock())
        self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
        self._seen[cmd.id] = cmd.expires_at
        if len(self._seen) > MAX_REMEMBERED:
            self._seen = dict(sorted(self._seen.items(), key=lambda kv: kv[1])[-MAX_REMEMBERED:])
        crypto.write_atomic(self._path, json.dumps(self._seen).encode())
