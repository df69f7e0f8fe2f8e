"""ICE consent under heavy loss: two real aiortc connections in a network namespace with
80 % of UDP dropped by nftables, time scaled down 10x (consent window 3 s instead of 30 s):
aioice's own checker closes its connection, ours keeps the call and data flows after."""
from __future__ import annotations

import asyncio
import os
import shutil

import aioice.ice
import aioice.stun
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

import media.net.consent as consent
from tests.janus import create_netns, delete_netns, netns_entered, only_loopback_addresses
from tests.loss import udp_loss
from tests.media.video.helpers import negotiate, until

SCALE = 0.1
LOSS_SPELL_S = 8.0
WAIT_S = 10.0


@pytest.fixture
def netns(monkeypatch):
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("consent: needs root and nftables (CI runs as root with deps/apt.txt)")
    monkeypatch.setattr(aioice.ice, "get_host_addresses", only_loopback_addresses)
    # Everything 10x faster: aioice's check interval and STUN timeout, and ours.
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", aioice.ice.CONSENT_INTERVAL * SCALE)
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", aioice.stun.RETRY_RTO * SCALE)
    for name in ("CHECK_INTERVAL_S", "RECOVER_INTERVAL_S", "CONSENT_TIMEOUT_S"):
        monkeypatch.setattr(consent, name, getattr(consent, name) * SCALE)
    name = f"roombox-consent-{os.getpid()}"
    create_netns(name)
    try:
        with netns_entered(name):
            yield name
    finally:
        delete_netns(name)


async def _pair(ours: bool):
    a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = a.createDataChannel("probe")
    received: asyncio.Queue = asyncio.Queue()

    @b.on("datachannel")
    def on_channel(remote):
        remote.on("message", received.put_nowait)

    await negotiate(a, b)
    if ours:
        for pc in (a, b):
            consent.tolerate_loss(pc)
    await until(lambda: channel.readyState == "open", WAIT_S, "the data channel to open")
    return a, b, received, channel


async def test_heavy_loss_closes_aioices_connection_but_not_ours(netns):
    stock_a, stock_b, _, _ = await _pair(ours=False)
    our_a, our_b, received, channel = await _pair(ours=True)
    try:
        with udp_loss(netns, 80):
            await asyncio.sleep(LOSS_SPELL_S)
        assert stock_a.iceConnectionState == "closed" or stock_b.iceConnectionState == "closed", \
            "aioice's checker should have given up under 80 % loss"
        assert our_a.iceConnectionState == "completed" and our_b.iceConnectionState == "completed"
        channel.send("after the storm")
        async with asyncio.timeout(WAIT_S):
            assert await received.get() == "after the storm"
    finally:
        for pc in (stock_a, stock_b, our_a, our_b):
            await pc.close()
