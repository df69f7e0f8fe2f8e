"""Technician access: grants of hashed short-lived codes, sessions, and a guess limit."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

MAX_GRANT_S = 8 * 3600          # a code opens the page for a working day at most
FAILURES_PER_WINDOW = 5
FAILURE_WINDOW_S = 60.0
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"   # no 0/O or 1/I to misread
CODE_LENGTH = 10


def code_digest(code: str) -> str:
    """How a code is stored and sent: SHA-256 of its normalised form."""
    normal = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode()).hexdigest()


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


@dataclass
class Grant:
    digest: str
    expires_at: float


class TechnicianAccess:
    """Holds grants and sessions in memory: a restart ends every technician session, and
    codes never touch the disk."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._grants: list[Grant] = []
        self._sessions: dict[str, float] = {}
        self._failures: dict[str, deque[float]] = {}

    def grant(self, digest: str, valid_s: float) -> float:
        """Accept a code by its digest for ``valid_s`` seconds; returns when it expires.

        Raises ValueError naming the field when the digest or lifetime is wrong."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"technician_access.code_sha256 must be 64 lowercase hex digits, got {digest[:70]!r}")
        if not 0 < valid_s <= MAX_GRANT_S:
            raise ValueError(f"technician_access.valid_s must be between 1 and {MAX_GRANT_S}, got {valid_s}")
        expires_at = self._clock() + valid_s
        self._grants = [g for g in self._grants if g.expires_at > self._clock()] + [Grant(digest, expires_at)]
        return expires_at

    def issue_local(self, valid_s: float = 900) -> tuple[str, float]:
        """A fresh code for someone at the box's shell (``roombox technician-code``)."""
        code = new_code()
        return code, self.grant(code_digest(code), valid_s)

    def now(self) -> float:
        return self._clock()

    @property
    def has_grants(self) -> bool:
        return any(g.expires_at > self._clock() for g in self._grants)

    def is_blocked(self, client: str) -> bool:
        recent = self._failures.get(client)
        if not recent:
            return False
        while recent and recent[0] < self._clock() - FAILURE_WINDOW_S:
            recent.popleft()
        return len(recent) >= FAILURES_PER_WINDOW

    def login(self, client: str, code: str) -> tuple[str, float] | None:
        """A new session token and its expiry for a valid code, else None (counted)."""
        now = self._clock()
        digest = code_digest(code)
        for grant in self._grants:
            if grant.expires_at > now and hmac.compare_digest(grant.digest, digest):
                token = secrets.token_urlsafe(32)
                self._sessions[token] = grant.expires_at
                return token, grant.expires_at
        self._failures.setdefault(client, deque()).append(now)
        return None

    def session_valid(self, token: str | None) -> bool:
        if not token:
            return False
        expires_at = self._sessions.get(token)
        if expires_at is None:
            return False
        if expires_at <= self._clock():
            del self._sessions[token]
            return False
        return True
