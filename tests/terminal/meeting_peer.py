"""Helpers of the meeting tests: the simulated remote participant (terminal.loopback.peer)
and waiting for conditions that have no event of their own."""
from __future__ import annotations

import asyncio
from typing import Callable

from terminal.loopback.peer import (SMALL_CAMERA, RemotePeer, create_room, has_tone,  # noqa: F401
                                    tone_level)

POLL_S = 0.02


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Await a condition with a timeout; the failure says what was awaited."""
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None
