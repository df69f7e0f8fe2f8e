"""Signed configuration on the box: verify, trial, commit or roll back to last-known-good.

Files in ``<state>/config/``::

    committed.jws   the last-known-good config (what the box runs after a restart)
    trial.jws       a verified config being tried; found at start-up it means we crashed
                    during the trial, so it is rolled back (crash-loop protection)
    state.json      versions refused after a failed trial, with the reason

Every write is atomic (``crypto.write_atomic``); a rejected document never touches them.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .. import crypto
from ..errors import ConfigRejected
from ..schema import (CONFIG_TYP, MAX_DOCUMENT_BYTES, SAFE_SETTINGS, ConfigDocument,
                      parse_config_payload)

log = logging.getLogger(__name__)


class ConfigStore:
    """The box's provisioned config. Not thread-safe; owned by the provisioning agent."""

    def __init__(self, state_dir: Path, serial: str, config_key_pem: bytes, clock=time.time):
        self.dir = Path(state_dir) / "config"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.serial = serial
        self._key = config_key_pem
        self._clock = clock
        self._committed_path = self.dir / "committed.jws"
        self._trial_path = self.dir / "trial.jws"
        self._state_path = self.dir / "state.json"
        self.committed: ConfigDocument | None = self._load_committed()
        self.trial: ConfigDocument | None = None
        self.last_rollback: dict | None = None
        if self._trial_path.exists():
            self.rollback("restarted while trying version "
                          f"{self._peek_version(self._trial_path)}")

    # --- reading -----------------------------------------------------------------------
    @property
    def running(self):
        """Settings in force: the trial if any, else the committed config, else the safe one."""
        doc = self.trial or self.committed
        return doc.settings if doc else SAFE_SETTINGS

    @property
    def version(self) -> int:
        return self.committed.version if self.committed else 0

    def _load_committed(self) -> ConfigDocument | None:
        if not self._committed_path.exists():
            return None
        try:
            # A committed config already passed its expiry check when it arrived; it keeps
            # running after exp so a box that lost its service still serves its room.
            return self.verify(self._committed_path.read_text(), check_freshness=False)
        except ConfigRejected as exc:
            log.error("provisioning: committed config unusable, running safe config (%s)", exc)
            return None

    def _peek_version(self, path: Path):
        try:
            return self.verify(path.read_text(), check_freshness=False).version
        except ConfigRejected:
            return "?"

    def _failed(self) -> dict:
        try:
            return json.loads(self._state_path.read_text()).get("failed", {})
        except FileNotFoundError:
            return {}

    def has_failed(self, version: int) -> bool:
        """True when ``version`` was tried here and rolled back (do not fetch it again)."""
        return str(version) in self._failed()

    # --- checking ----------------------------------------------------------------------
    def verify(self, token: str, check_freshness: bool = True) -> ConfigDocument:
        """Check size, signature, schema, owner, expiry and version; raise ConfigRejected."""
        if not isinstance(token, str):
            raise ConfigRejected("config document must be a JWS string, "
                                 f"got {type(token).__name__}")
        if len(token.encode()) > MAX_DOCUMENT_BYTES:
            raise ConfigRejected(f"config document must be at most {MAX_DOCUMENT_BYTES} bytes, "
                                 f"got {len(token.encode())}")
        try:
            payload = crypto.verify_document(token, self._key, CONFIG_TYP)
        except ValueError as exc:
            raise ConfigRejected(f"config document refused: {exc}") from None
        doc = parse_config_payload(payload)
        if doc.serial != self.serial:
            raise ConfigRejected(f"sub must be this box's serial {self.serial!r}, "
                                 f"got {doc.serial!r}")
        if check_freshness:
            now = int(self._clock())
            if doc.expires_at <= now:
                raise ConfigRejected(f"exp must be in the future, got {doc.expires_at} "
                                     f"(now {now})")
            if doc.version <= self.version:
                raise ConfigRejected(f"ver must be greater than the running version "
                                     f"{self.version}, got {doc.version}")
        return doc

    # --- changing ----------------------------------------------------------------------
    def begin_trial(self, token: str) -> ConfigDocument:
        """Verify ``token`` and make it the trial config; the committed one stays on disk."""
        if self.trial is not None:
            raise ConfigRejected(f"a trial of version {self.trial.version} is in progress")
        doc = self.verify(token)
        crypto.write_atomic(self._trial_path, token.encode(), mode=0o600)
        self.trial = doc
        return doc

    def commit(self) -> ConfigDocument:
        """The trial passed its health checks: it becomes the last-known-good config."""
        if self.trial is None:
            raise RuntimeError("commit without a trial")
        # rename is atomic: at every instant committed.jws is the old or the new config.
        self._trial_path.replace(self._committed_path)
        self.committed, self.trial = self.trial, None
        return self.committed

    def rollback(self, reason: str) -> dict:
        """Drop the trial, remember its version as failed and why; back to last-known-good."""
        version = self.trial.version if self.trial else self._peek_version(self._trial_path)
        failed = self._failed()
        failed[str(version)] = reason
        # Keep the newest few: the service moves on to higher versions anyway.
        failed = dict(sorted(failed.items(),
                             key=lambda kv: int(kv[0]) if kv[0].isdigit() else -1)[-20:])
        crypto.write_atomic(self._state_path, json.dumps({"failed": failed}).encode())
        self._trial_path.unlink(missing_ok=True)
        self.trial = None
        self.last_rollback = {"version": version, "reason": reason}
        log.warning("provisioning: config version %s rolled back (%s)", version, reason)
        return self.last_rollback
