"""Helpers shared by the video tests (not fixtures)."""
from __future__ import annotations

import asyncio
import contextlib

from aiortc import RTCPeerConnection

from tests.wait import until  # noqa: F401  (the video tests import it from here)


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
