"""In-band video FEC (media/video/fec.py, fec_stream.py): the Reed-Solomon code, the SEI
carriage, and real libx264 frames packed with parity, thinned by random loss, reordered
and duplicated, repaired by the jitter buffer without any NACK answered, and decoded."""
from __future__ import annotations

import random
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs import depayload, get_capabilities
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from hal.camera import stamp as stamps
from media.video.decoder import open_decoder
from media.video.fec import (UUID, Parity, encode_parity, escape, parity_count, recover_blocks,
                             unescape)
from media.video.fec_stream import ProtectedH264Packer
from media.video.jitterbuffer import MarkerJitterBuffer

WIDTH, HEIGHT = 320, 240
CODEC = next(c for c in get_capabilities("video").codecs if c.mimeType == "video/H264")
PARAMS = RTCRtpCodecParameters(mimeType=CODEC.mimeType, clockRate=CODEC.clockRate, payloadType=102)


# ---- the code --------------------------------------------------------------------------

@pytest.mark.parametrize("k,r", [(1, 1), (1, 2), (3, 2), (12, 4), (48, 16)])
def test_any_k_of_k_plus_r_packets_rebuild_the_data(k, r):
    rng = random.Random(k * 100 + r)
    data = np.frombuffer(rng.randbytes(k * 301), dtype=np.uint8).reshape(k, 301).copy()
    parity = encode_parity(data, r)
    for _ in range(30):
        lost = rng.sample(range(k), min(k, rng.randint(1, r)))
        used = rng.sample(range(r), len(lost))
        rebuilt = recover_blocks(k, {j: data[j] for j in range(k) if j not in lost},
                                 {i: parity[i] for i in used})
        assert sorted(rebuilt) == sorted(lost)
        for j in lost:
            assert np.array_equal(rebuilt[j], data[j])


def test_too_few_packets_is_an_error_not_a_guess():
    data = np.zeros((3, 10), dtype=np.uint8)
    with pytest.raises(ValueError, match="2 packets missing, only 1 parity"):
        recover_blocks(3, {0: data[0]}, {0: encode_parity(data, 1)[0]})


def test_parity_grows_with_expected_loss_and_stops_at_none_without_loss():
    assert parity_count(4, 0.0, 0.002) == 0
    counts = [parity_count(4, loss, 0.002) for loss in (0.01, 0.05, 0.1, 0.2)]
    assert counts == sorted(counts) and counts[0] >= 1 and counts[-1] > counts[0]
    assert parity_count(1, 0.1, 0.002) == 2            # one packet: two copies' worth


def test_emulation_prevention_round_trips_and_leaves_no_start_code():
    rng = random.Random(11)
    for _ in range(2000):
        raw = bytes(rng.choice((0, 0, 0, 1, 2, 3, 4, 0xFF)) for _ in range(rng.randint(0, 40)))
        escaped = escape(raw)
        assert unescape(escaped) == raw
        assert not any(code in escaped for code in (b"\x00\x00\x00", b"\x00\x00\x01", b"\x00\x00\x02"))


def test_parity_packets_are_sei_user_data_and_other_seis_are_not_taken_for_parity():
    parity = Parity(index=1, k=3, r=2, slice=0, slices=1, run_pos=1, run_len=2, prev_run_len=0,
                    first_delta=4, frame_delta=4, ts_delta=3000, length=600,
                    block=bytes(range(256)) + b"\x00\x00\x00\x01" * 10)
    payload = parity.to_payload()
    assert payload[0] & 0x1F == 6 and payload[1] == 5 and len(payload) <= 1300
    assert b"\x00\x00\x01" not in payload
    assert Parity.from_payload(payload) == parity
    x264_sei = b"\x06\x05\x10" + bytes(range(1, 17)) + b"x264 - core\x00\x80"
    assert Parity.from_payload(x264_sei) is None
    assert Parity.from_payload(payload[:30]) is None
    assert Parity.from_payload(b"\x65" + payload[1:]) is None      # an IDR slice
    assert UUID in unescape(payload)


# ---- real frames through the packer and the jitter buffer ------------------------------

def encoded_frames(count: int) -> list[av.Packet]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "g": "30"}
    rng = np.random.default_rng(5)
    texture = (rng.integers(96, 160, (HEIGHT * 3 // 2 // 8, WIDTH // 8), dtype=np.uint8)
               .repeat(8, axis=0).repeat(8, axis=1))
    out = []
    for i in range(count):
        image = np.roll(texture, 2 * i, axis=1)
        stamps.write_yuv420(image, WIDTH, HEIGHT, stamps.Stamp(i, 1000 + i))
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        out.extend(ctx.encode(frame))
    out.extend(ctx.encode(None))
    for packet in out:
        packet.time_base = Fraction(1, 30)
    return out


def rtp_stream(frames: list[av.Packet], packer: H264Encoder, first_seq: int = 65300) -> list[RtpPacket]:
    """What aiortc's sender puts on the wire for these frames (sequence numbers wrap)."""
    rtp, seq = [], first_seq
    for encoded in frames:
        payloads, timestamp = packer.pack(encoded)
        for j, payload in enumerate(payloads):
            p = RtpPacket(payload_type=102, sequence_number=seq & 0xFFFF, timestamp=timestamp,
                          marker=int(j == len(payloads) - 1), ssrc=1, payload=payload)
            rtp.append(p)
            seq += 1
    return rtp


def receive(rtp: list[RtpPacket], lost: set[int], rng: random.Random, shuffle: bool = True):
    """Feed the packets not in ``lost`` (by sequence number) to a jitter buffer, reordered in
    small windows and some duplicated; no NACK is ever answered. Returns the buffer and the
    released access units."""
    clock = [100.0]
    released: list[bytes] = []
    buffer = MarkerJitterBuffer(lambda data, ts, key: released.append(data), 0.25, lambda: clock[0])
    arriving = [p for p in rtp if p.sequence_number not in lost]
    if shuffle:
        for start in range(0, len(arriving) - 3, 3):
            window = arriving[start:start + 3]
            rng.shuffle(window)
            arriving[start:start + 3] = window
    newest = -1
    for p in arriving:
        if p.timestamp > newest:           # a frame's packets come in a burst, 30 frames a second
            clock[0] += 1 / 30
            newest = p.timestamp
        for _ in range(2 if rng.random() < 0.05 else 1):
            copy = RtpPacket(payload_type=p.payload_type, marker=p.marker, sequence_number=p.sequence_number,
                             timestamp=p.timestamp, ssrc=p.ssrc, payload=p.payload)
            copy._data = depayload(PARAMS, p.payload)
            buffer.add(copy)
        clock[0] += 0.0005
        buffer.poll()
    clock[0] += 1.0
    buffer.poll()
    return buffer, released


def decoded_counters(access_units: list[bytes]) -> list[int]:
    decoder, _ = open_decoder()
    counters = []
    for data in access_units:
        for picture in decoder.decode(data):
            stamp = stamps.read_frame(picture)
            assert stamp is not None, "a released frame decoded to a corrupt picture"
            counters.append(stamp.counter)
    return counters


def test_every_decoder_skips_the_parity_a_protected_stream_decodes_whole():
    frames = encoded_frames(40)
    rtp = rtp_stream(frames, ProtectedH264Packer(expected_loss=0.1))
    parity = [p for p in rtp if Parity.from_payload(p.payload) is not None]
    assert len(parity) >= 40
    # FFmpeg given every packet, parity SEIs included, as a receiver unaware of them would.
    by_frame: dict[int, bytes] = {}
    for p in rtp:
        by_frame[p.timestamp] = by_frame.get(p.timestamp, b"") + depayload(PARAMS, p.payload)
    assert decoded_counters(list(by_frame.values())) == list(range(40))


def test_random_loss_without_any_retransmission_is_repaired_by_parity():
    """10 % random loss, reordering, duplicates, wrap-around, no NACK answered: with parity
    planned for 10 % nearly every frame arrives; without it, most of the stream is lost
    to frozen references."""
    frames = encoded_frames(240)
    protected = rtp_stream(frames, ProtectedH264Packer(expected_loss=0.1))
    plain = rtp_stream(frames, H264Encoder())
    rng = random.Random(11)
    lose = lambda rtp: {p.sequence_number for p in rtp if rng.random() < 0.1}  # noqa: E731
    buffer, released = receive(protected, lose(protected), rng)
    counters = decoded_counters(released)
    assert counters == sorted(counters)
    assert buffer.fec_rebuilt >= 20
    # A frame given up costs the frames up to the next keyframe (one a second here).
    assert buffer.deadline_skips <= 2 and len(counters) >= 0.85 * 240, buffer.status()
    plain_buffer, plain_released = receive(plain, lose(plain), rng)
    assert plain_buffer.deadline_skips >= 5
    assert len(decoded_counters(plain_released)) < 0.6 * 240


def test_parity_keeps_to_its_share_of_the_rate_and_still_repairs():
    """At a low rate under congestion the picture is at its floor and parity may only take
    what is left: ``max_overhead`` 0.5 holds parity to half the picture's bytes (planned
    for 30 % loss it was several times the picture), and what parity there is still
    repairs: the stream decodes in order, with frames rebuilt."""
    frames = encoded_frames(240)
    free = ProtectedH264Packer(expected_loss=0.3)
    rtp_stream(frames, free)
    assert free.parity_bytes > 1.5 * free.data_bytes, (free.parity_bytes, free.data_bytes)
    capped = ProtectedH264Packer(expected_loss=0.3)
    capped.max_overhead = 0.5
    rtp = rtp_stream(frames, capped)
    assert capped.parity_bytes <= 0.5 * capped.data_bytes, (capped.parity_bytes, capped.data_bytes)
    assert capped.parity_bytes >= 0.3 * capped.data_bytes, "the allowance is spent, not hoarded"
    rng = random.Random(3)
    buffer, released = receive(rtp, {p.sequence_number for p in rtp if rng.random() < 0.05}, rng)
    counters = decoded_counters(released)
    assert counters == sorted(counters) and buffer.fec_rebuilt >= 5, buffer.status()
    none = ProtectedH264Packer(expected_loss=0.3)
    none.max_overhead = 0.0
    rtp_stream(frames, none)
    assert none.parity_bytes == 0


def test_lost_parity_never_blocks_a_frame():
    """Every parity packet of every other run lost (and nothing else): the frames behind
    those runs are released all the same, and no parity sequence number is NACKed for long."""
    frames = encoded_frames(60)
    rtp = rtp_stream(frames, ProtectedH264Packer(expected_loss=0.1))
    runs: dict[int, list[int]] = {}
    for p in rtp:
        if Parity.from_payload(p.payload) is not None:
            runs.setdefault(p.timestamp, []).append(p.sequence_number)
    lost = {seq for i, (ts, seqs) in enumerate(sorted(runs.items())) if i % 2 for seq in seqs}
    buffer, released = receive(rtp, lost, random.Random(2), shuffle=False)
    assert decoded_counters(released) == list(range(60))
    assert buffer.deadline_skips == 0 and buffer.fec_rebuilt == 0
    # Lost runs take placeholders once a later run describes them (a lost run in front of a
    # complete keyframe is simply skipped to).
    assert buffer.parity_placeholders >= 0.9 * len(lost)


def test_damaged_parity_packets_are_ignored_never_raised():
    """A bad packet must never take down a call: truncated, bit-flipped or random parity
    SEIs are either refused or filed, and never make the buffer raise."""
    frames = encoded_frames(20)
    rtp = rtp_stream(frames, ProtectedH264Packer(expected_loss=0.2))
    rng = random.Random(4)
    damaged = []
    for p in rtp:
        payload = p.payload
        if Parity.from_payload(payload) is not None and rng.random() < 0.5:
            cut = bytearray(payload[:rng.randint(2, len(payload))])
            for _ in range(rng.randint(0, 5)):
                cut[rng.randrange(2, len(cut))] ^= 1 << rng.randrange(8) if len(cut) > 2 else 0
            payload = bytes(cut)
        damaged.append(RtpPacket(payload_type=102, marker=p.marker, sequence_number=p.sequence_number,
                                 timestamp=p.timestamp, ssrc=1, payload=payload))
    lost = {p.sequence_number for p in damaged if rng.random() < 0.1}
    buffer, released = receive(damaged, lost, rng)
    assert buffer.fec.parity_received > 0
    decoded_counters(released)          # whatever was released decodes to intact pictures
