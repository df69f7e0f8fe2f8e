"""End to end through a real Janus VideoRoom on loopback: our publisher (libx264, no
re-encoding in aiortc) → Janus → an aiortc subscriber with our marker-bit receiver."""
from __future__ import annotations

import asyncio
import statistics

from hal.camera import stamp as stamps
from media.video import VideoConfig, VideoEncoder, VideoReceiver, VideoSender, choose_encoder
from tests.janus import JanusClient, create_room, publish, subscribe
from tests.media.video.helpers import background

WAIT_S = 20
ROOM = 4242


async def test_publish_through_janus_and_decode_stamps_in_order_at_the_subscriber(
        camera, make_pc, in_janus_netns):
    config = VideoConfig(encoder="libx264", keyframe_interval_s=10)
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    client = JanusClient(in_janus_netns.url)
    async with client.session(), background(encoder.run()):
        await create_room(client, ROOM)
        publisher = make_pc()
        sender = VideoSender(encoder, adapt=False)
        sender.attach(publisher)
        feed = await publish(client, ROOM, publisher)
        assert sender.check_negotiated(publisher) == "H264"
        async with VideoReceiver() as receiver:
            await subscribe(client, ROOM, feed, make_pc(), receiver.attach)
            found = []
            async with asyncio.timeout(WAIT_S):
                while len(found) < 45:
                    frame = await receiver.recv()
                    stamp = stamps.read_frame(frame)
                    assert stamp is not None, "stamp unreadable after Janus"
                    found.append((stamp, stamp.age_ms()))
    counters = [s.counter for s, _ in found]
    assert counters == sorted(set(counters)), "each frame once, in capture order"
    assert counters[-1] - counters[0] + 1 - len(counters) <= 3
    latency_ms = statistics.median(age for _, age in found[10:])
    # The benchmark holds the real goal (p50 ≤ 25 ms at 720p); this only catches a frame
    # of extra buffering creeping back in, with room for a loaded CI machine.
    assert latency_ms < 100, f"median stamp→decoded {latency_ms:.1f} ms"
    assert sender.status()["codec"] == "H264"
