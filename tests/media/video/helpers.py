"""Helpers shared by the video tests (not fixtures)."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Callable

from aiortc import RTCPeerConnection

POLL_S = 0.01


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Await a condition that has no event of its own (e.g. an RTCP counter), with a timeout."""
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer between two in-process peers (aiortc gathers before it returns)."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


@contextlib.asynccontextmanager
async def background(coro):
    """Run ``coro`` as a task for the block; cancel and await it afterwards."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
