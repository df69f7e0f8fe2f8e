"""Video test fixtures: a small simulated camera, loopback-only aiortc peers, and a real
Janus on loopback (from tests/janus.py, shared with the meetings tests)."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from hal.camera import open_camera
from hal.profile import load_profile
from tests.janus import in_janus_netns, janus, loopback_ice  # noqa: F401  (fixtures)

# Small frames keep the suite fast on a shared 2-core machine; the stamp still fits.
SMALL_SIZE = {"width": 320, "height": 240, "fps": 30}


@pytest.fixture
async def camera():
    profile = dataclasses.replace(load_profile("sim").camera, **SMALL_SIZE)
    cam = await asyncio.to_thread(open_camera, profile)
    try:
        yield cam
    finally:
        cam.close()


@pytest.fixture
async def make_pc(loopback_ice):
    """RTCPeerConnections with no STUN server; all closed at the end of the test."""
    pcs: list[RTCPeerConnection] = []

    def make() -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        return pc

    yield make
    for pc in pcs:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await pc.close()
