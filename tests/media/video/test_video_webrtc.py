"""Our encoder into aiortc without re-encoding, between two in-process peers on 127.0.0.1:
H.264 forced against a VP8-preferring peer, PLI → IDR, REMB → encoder bitrate, and the
marker-bit receiver decoding stamped frames in order."""
from __future__ import annotations

import asyncio
import contextlib
import statistics
from types import SimpleNamespace

import pytest
from aiortc import RTCRtpSender
from aiortc.rtp import (RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, RtcpReceiverInfo, RtcpRrPacket,
                        pack_remb_fci)

from hal.camera import stamp as stamps
from media.video import (CodecNotNegotiated, VideoConfig, VideoEncoder, VideoReceiver,
                         VideoSender, choose_encoder)
from media.video.ladder import QualityLadder
from media.video.lossrate import ExpectedLoss, LossRate
from media.video.webrtc import negotiated_video_codecs
from tests.media.video.helpers import background, negotiate, until

WAIT_S = 15


def vp8_first():
    codecs = RTCRtpSender.getCapabilities("video").codecs
    return sorted(codecs, key=lambda c: c.mimeType.lower() != "video/vp8")


@contextlib.asynccontextmanager
async def call(camera, make_pc, config: VideoConfig, we_offer: bool = True):
    """Publisher (our sender) → subscriber (aiortc peer preferring VP8, our receiver)."""
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    publisher, subscriber = make_pc(), make_pc()
    sender = VideoSender(encoder, adapt=False)
    sender.attach(publisher)
    wanted = subscriber.addTransceiver("video", direction="recvonly")
    wanted.setCodecPreferences(vp8_first())
    async with VideoReceiver() as receiver:
        receiver.attach(wanted.receiver)
        await (negotiate(publisher, subscriber) if we_offer else negotiate(subscriber, publisher))
        sender.check_negotiated(publisher)
        async with background(encoder.run()):
            yield SimpleNamespace(encoder=encoder, sender=sender, receiver=receiver,
                                  publisher=publisher, subscriber=subscriber, wanted=wanted)


async def stamped_frames(receiver: VideoReceiver, count: int) -> list[stamps.Stamp]:
    found = []
    async with asyncio.timeout(WAIT_S):
        while len(found) < count:
            stamp = stamps.read_frame(await receiver.recv())
            assert stamp is not None, "a decoded frame's stamp failed its check"
            found.append(stamp)
    return found


@pytest.mark.parametrize("we_offer", [True, False], ids=["we-offer", "peer-offers"])
async def test_h264_is_forced_against_a_peer_preferring_vp8_and_decodes_in_order(
        camera, make_pc, we_offer):
    async with call(camera, make_pc, VideoConfig(encoder="libx264"), we_offer) as c:
        found = await stamped_frames(c.receiver, 30)
        answer = c.subscriber.localDescription if we_offer else c.publisher.localDescription
        assert answer.type == "answer"
        assert set(negotiated_video_codecs(answer.sdp, c.wanted.mid)) == {"H264"}
    assert c.sender.codec == "H264"
    counters = [s.counter for s in found]
    assert counters == sorted(set(counters)), "frames arrive once each, in capture order"
    assert counters[-1] - counters[0] + 1 - len(counters) <= 3
    assert c.receiver.status()["decoder"] == "software"
    assert c.encoder.status()["outputs"]["webrtc"]["written"] >= 30


async def test_answer_without_h264_raises_codec_not_negotiated(camera, make_pc):
    config = VideoConfig(encoder="libx264")
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    publisher, subscriber = make_pc(), make_pc()
    sender = VideoSender(encoder, adapt=False)
    sender.attach(publisher)
    subscriber.addTransceiver("video", direction="recvonly")
    await negotiate(publisher, subscriber)
    answer = subscriber.localDescription.sdp
    assert sender.check_answer(answer) == "H264"
    # What a peer that only knows VP8 could answer (aiortc would then send H.264 as VP8):
    vp8_answer = answer.replace("H264/90000", "VP8/90000")
    with pytest.raises(CodecNotNegotiated, match=r"answered codecs \['VP8'.*expected H264 only"):
        sender.check_answer(vp8_answer)


async def test_pli_from_the_viewer_gets_an_idr_within_a_frame_interval(camera, make_pc):
    # No rate limit here (the encoder test covers it): the PLI must not wait out a gap.
    config = VideoConfig(encoder="libx264", keyframe_interval_s=60, keyframe_min_gap_s=0.0)
    async with call(camera, make_pc, config) as c:
        await stamped_frames(c.receiver, 10)
        keyframes_before = c.receiver.buffer.keyframes_released
        plis_before = c.sender.pli_count
        # The receiver asks as it would after a decode error: PLI on its next RTP packet.
        c.receiver.buffer.request_keyframe()
        await until(lambda: c.receiver.buffer.keyframes_released > keyframes_before, WAIT_S,
                    "an IDR after the PLI")
        await stamped_frames(c.receiver, 5)
    assert c.sender.pli_count == plis_before + 1
    assert c.encoder.last_keyframe_reason == "PLI"
    frame_interval_s = 1 / camera.fps
    # The next frame out of the camera becomes the IDR; allow for encoding it on a busy box.
    assert c.encoder.last_keyframe_delay_s < frame_interval_s + 0.02, c.encoder.last_keyframe_delay_s
    # Periodic keyframes are 60 s apart: the ones seen are the start and the PLI's.
    assert c.receiver.buffer.keyframes_released == keyframes_before + 1


async def test_encoder_bitrate_follows_remb(camera, make_pc):
    config = VideoConfig(encoder="libx264", bitrate_bps=1_000_000, max_bitrate_bps=1_000_000,
                         keyframe_interval_s=60)
    async with call(camera, make_pc, config) as c:
        # Silence aiortc's own receive-side estimator so the only REMB is the test's.
        c.wanted.receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        await stamped_frames(c.receiver, 30)
        bytes_high, frames_high = c.encoder.bytes_out, c.encoder.frames_encoded
        await stamped_frames(c.receiver, 30)
        high = (c.encoder.bytes_out - bytes_high) / (c.encoder.frames_encoded - frames_high)
        media_ssrc = c.wanted.receiver.getSynchronizationSources()[0].source
        remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                              fci=pack_remb_fci(200_000, [media_ssrc]))
        await c.wanted.receiver._send_rtcp(remb)
        await until(lambda: c.sender.remb_count == 1, WAIT_S, "the REMB at the sender")
        # 90 % of the estimate, all of it picture: no loss seen, so no FEC parity (whose
        # bytes would come out of the same budget).
        assert c.sender.data_share == 1.0 and c.sender.packer.parity_packets == 0
        assert c.encoder.target_bitrate_bps == 180_000
        await stamped_frames(c.receiver, 15)            # let rate control settle
        bytes_low, frames_low = c.encoder.bytes_out, c.encoder.frames_encoded
        await stamped_frames(c.receiver, 30)
        low = (c.encoder.bytes_out - bytes_low) / (c.encoder.frames_encoded - frames_low)
    assert c.sender.remb_bps == 200_000
    assert low < 0.5 * high, f"bytes/frame: {high:.0f} at 1 Mbit/s, {low:.0f} after REMB 200 kbit/s"


async def test_quality_steps_down_on_low_remb_and_back_up_with_the_receiver_following(
        camera, make_pc):
    config = VideoConfig(encoder="libx264", ladder=("320x240@30", "160x120@15"))
    async with call(camera, make_pc, config) as c:
        c.wanted.receiver._RTCRtpReceiver__remote_bitrate_estimator = None
        # No hold times: one REMB decides (the hold logic has its own test).
        c.sender.ladder = QualityLadder(c.encoder.rungs, down_hold_s=0.0, up_hold_s=0.0)
        media_ssrc = None

        async def remb(bitrate_bps: int) -> None:
            nonlocal media_ssrc
            media_ssrc = media_ssrc or c.wanted.receiver.getSynchronizationSources()[0].source
            await c.wanted.receiver._send_rtcp(RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bitrate_bps, [media_ssrc])))

        async def frames_until(width: int) -> list:
            seen = []
            async with asyncio.timeout(WAIT_S):
                while not seen or seen[-1].width != width:
                    seen.append(await c.receiver.recv())
            return seen

        assert (await c.receiver.recv()).width == 320
        await remb(50_000)               # 320x240@30 needs ~92 kbit/s
        await frames_until(160)
        assert c.encoder.status()["quality"] == "160x120@15"
        small = [await c.receiver.recv() for _ in range(10)]
        assert {f.width for f in small} == {160}
        step = statistics.median(b.pts - a.pts for a, b in zip(small, small[1:]))
        assert step == pytest.approx(6000, rel=0.2), "15 fps: 6000 ticks of 90 kHz apart"
        await remb(1_000_000)
        await frames_until(320)
        assert c.encoder.status()["quality"] == "320x240@30"
    assert c.sender.remb_count == 2 and "recovered" in c.sender.ladder.last_reason


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def receiver_report(ssrc: int, loss: float) -> RtcpRrPacket:
    info = RtcpReceiverInfo(ssrc=ssrc, fraction_lost=min(255, round(loss * 256)), packets_lost=0,
                            highest_sequence=0, jitter=0, lsr=0, dlsr=0)
    return RtcpRrPacket(ssrc=1, reports=[info])


@pytest.mark.parametrize("link", ["random", "congested"])
async def test_parity_follows_random_loss_but_not_congestion_or_the_requests_it_causes(camera, link):
    """Janus's reports a second apart (and a forwarded PLI after a second with more loss than the parity covers), as
    aiortc's RTCP objects: random 10 % loss on our leg gets parity for it and keeps the rate;
    loss from a 400 kbit/s bottleneck (it falls with the rate) gets none, and the viewers'
    keyframe requests it causes raise nothing."""
    config = VideoConfig(encoder="libx264", bitrate_bps=1_000_000, keyframe_interval_s=60)
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    sender = VideoSender(encoder, adapt=False)
    clock = FakeClock()
    sender.loss_rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    sender.expected_loss = ExpectedLoss(0.0, clock)
    ssrc = 1234
    for second in range(60):
        clock.now += 1.0
        loss = 0.10 if link == "random" else max(0.0, 1 - 400_000 / sender.allowed_bps())
        sender._on_rtcp(receiver_report(ssrc, loss), ssrc)
        if loss > sender.packer.expected_loss + 0.05:   # more than the parity covers: frames
            # break and the viewer asks for a keyframe
            sender._on_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=ssrc), ssrc)
    planned = sender.packer.expected_loss
    if link == "random":
        assert planned >= 0.09 and sender.allowed_bps() > 1_000_000, (planned, sender.allowed_bps())
    else:
        assert planned < 1e-3 and sender.expected_loss.viewers == 0.0, planned
        assert sender.allowed_bps() <= 480_000 and sender.loss_rate.retransmit_copies() == 1
        # and whatever parity is planned keeps the stream within the rate: the picture's
        # floor (150 kbit/s) plus parity at most what is left of the target
        assert 150_000 * (1 + sender.packer.max_overhead) <= max(1.25 * 150_000, sender.allowed_bps())

