"""Helpers of the meeting tests: the simulated remote participant (terminal.loopback.peer)
and waiting for conditions that have no event of their own (tests/wait.py)."""
from __future__ import annotations

from terminal.loopback.peer import (SMALL_CAMERA, RemotePeer, create_room, has_tone,  # noqa: F401
                                    tone_level)
from tests.wait import until  # noqa: F401
