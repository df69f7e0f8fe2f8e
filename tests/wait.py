"""Waiting in tests for a condition that has no event of its own (an RTCP counter, a state
reached by another task), always with a timeout whose failure says what was awaited."""
from __future__ import annotations

import asyncio
from typing import Callable

POLL_S = 0.01


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None
