"""The loss-resilient Opus send path: our encoder inside a real aiortc RTCRtpSender, FEC
packets that carry a usable copy of the previous frame, expected loss following receiver
reports, and the SDP that makes Janus negotiate in-band FEC end to end."""
from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs import PCMU_CODEC
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

from media.audio.opus import OpusDecoder, packet_samples
from media.audio.opus_sender import (MIN_EXPECTED_LOSS_PCT, REDUNDANCY, FecOpusEncoder,
                                     LossResilientOpus, advertise_opus_fec, with_opus_fec)
from terminal.call_audio import MicrophoneTrack
from tests.media.audio.speech_call import speech

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def frames_of(signal: np.ndarray, rate: int, size: int, layout: str = "mono"):
    channels = 2 if layout == "stereo" else 1
    for pts in range(0, len(signal) - size + 1, size):
        block = np.repeat(signal[pts:pts + size], channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, pts, fractions.Fraction(1, rate)
        yield frame


def test_encoder_sends_one_20ms_hybrid_packet_per_frame_with_sample_timestamps():
    encoder = FecOpusEncoder(expected_loss_pct=0)
    out = [encoder.encode(f) for f in frames_of(speech(1.0), 48000, 960)]
    assert [ts for _, ts in out] == [i * 960 for i in range(len(out))]
    assert all(len(payloads) == 1 and packet_samples(payloads[0]) == 960 for payloads, _ in out)
    # TOC configs 12-15 are hybrid (SILK + CELT): the SILK layer is what carries in-band FEC.
    assert {payloads[0][0] >> 3 for payloads, _ in out} <= {12, 13, 14, 15}


def test_encoder_takes_stereo_44k1_in_10ms_frames():
    encoder = FecOpusEncoder(expected_loss_pct=0)   # (48 kHz speech declared 44.1 kHz: any audio will do)
    out = [encoder.encode(f) for f in frames_of(speech(1.0)[:44100], 44100, 441, "stereo")]
    sent = [(payloads[0], ts) for payloads, ts in out if payloads]
    assert 45 <= len(sent) <= 50                          # 1 s in 20 ms packets, resampler delay aside
    assert [ts for _, ts in sent] == [i * 960 for i in range(len(sent))]


def test_fec_in_the_next_packet_rebuilds_the_lost_one():
    encoder = FecOpusEncoder(expected_loss_pct=0)
    encoder.plan(20)                                      # FEC planned, one copy kept for the test
    packets = [encoder.encode(f)[0][0] for f in frames_of(speech(1.0), 48000, 960)]
    reference = np.concatenate([OpusDecoder().decode(p) for p in packets[:31]])[-960:].astype(float)
    decoder = OpusDecoder()
    for packet in packets[:30]:
        decoder.decode(packet)
    rebuilt = decoder.decode_fec(packets[31], 960).astype(float)
    snr = 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - rebuilt) ** 2))
    assert np.sqrt(np.mean(reference ** 2)) > 300 and snr > 2


def test_expected_loss_follows_receiver_reports_above_a_floor():
    sender = LossResilientOpus()
    sender.on_fraction_lost(0)
    assert (sender.encoder.expected_loss_pct, sender.encoder.copies) == (MIN_EXPECTED_LOSS_PCT, 2)
    sender.on_fraction_lost(128)                          # 50 %, smoothed with the 0 % before
    assert (sender.encoder.expected_loss_pct, sender.encoder.copies) == (25, 2)
    sender.on_fraction_lost(204)                          # ~80 %
    assert (sender.encoder.expected_loss_pct, sender.encoder.copies) == (52, 3)
    out = [sender.encoder.encode(f) for f in frames_of(speech(0.1), 48000, 960)]
    # Applied on the encoding thread: three identical copies of each packet, at 32 kbit/s.
    assert all(len(payloads) == 3 and len(set(payloads)) == 1 for payloads, _ in out)
    assert (sender.encoder.opus.packet_loss_pct, sender.encoder.opus.bitrate_bps) == (52, 32000)
    assert LossResilientOpus(min_loss_pct=0).encoder.copies == 1


async def test_attached_sender_encodes_opus_with_fec_and_reads_reports():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        track = MicrophoneTrack()
        transceiver = pc.addTransceiver(track, direction="sendonly")
        resilient = LossResilientOpus()
        resilient.attach(transceiver.sender)
        track.push(speech(0.1)[:960])
        encoded = await transceiver.sender._next_encoded_frame(OPUS)
        assert resilient.is_active and transceiver.sender._RTCRtpSender__encoder is resilient.encoder
        assert encoded.timestamp == 0 and packet_samples(encoded.payloads[0]) == 960
        assert encoded.payloads == [encoded.payloads[0]] * 2   # two copies below 35 % expected loss
        report = RtcpReceiverInfo(ssrc=transceiver.sender._ssrc, fraction_lost=77, packets_lost=3,
                                  highest_sequence=10, jitter=0, lsr=0, dlsr=0)
        await transceiver.sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[report]))
        assert resilient.reports == 1 and resilient.encoder.expected_loss_pct == 30
        assert resilient.status()["reported_loss_pct"] == pytest.approx(30.1, abs=0.1)
    finally:
        await pc.close()


async def test_a_non_opus_codec_keeps_aiortcs_encoder():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        track = MicrophoneTrack()
        transceiver = pc.addTransceiver(track, direction="sendonly")
        resilient = LossResilientOpus()
        resilient.attach(transceiver.sender)
        encoded = None
        for block in speech(0.1).reshape(-1, 960):       # aiortc's resampler holds the first back
            track.push(block)
            encoded = encoded or await transceiver.sender._next_encoded_frame(PCMU_CODEC)
        assert not resilient.is_active and len(encoded.payloads[0]) == 160   # 20 ms of G.711
    finally:
        await pc.close()


def test_sdp_gets_useinbandfec_on_every_opus_section_only():
    sdp = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 96 0\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 minptime=10;useinbandfec=0\r\n"
           "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1\r\n")
    out = with_opus_fec(sdp).split("\r\n")
    assert out[3:5] == ["a=rtpmap:96 opus/48000/2", "a=fmtp:96 useinbandfec=1"]
    assert "a=fmtp:96 minptime=10;useinbandfec=1" in out
    assert "a=fmtp:97 packetization-mode=1" in out and out.count("a=fmtp:96 useinbandfec=1") == 1
    assert with_opus_fec(with_opus_fec(sdp)) == with_opus_fec(sdp)


async def test_peer_connection_offers_and_answers_opus_fec():
    offerer, answerer = (RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2))
    try:
        for pc in (offerer, answerer):
            advertise_opus_fec(pc)
        offerer.addTransceiver(MicrophoneTrack(), direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        for pc in (offerer, answerer):
            assert "useinbandfec=1" in pc.localDescription.sdp
    finally:
        await offerer.close()
        await answerer.close()


@pytest.mark.parametrize("step", REDUNDANCY)
def test_every_redundancy_step_stays_fec_capable_within_stock_bitrate(step):
    encoder = FecOpusEncoder(expected_loss_pct=step.from_loss_pct)
    out = [encoder.encode(f)[0] for f in frames_of(speech(1.0), 48000, 960)]
    assert all(len(payloads) == step.copies for payloads in out)
    assert {payloads[0][0] >> 3 for payloads in out} <= {12, 13, 14, 15}   # hybrid: SILK carries FEC
    assert step.bitrate_bps * step.copies <= 96000        # what stock aiortc sends for one copy
