"""The latency-budget video jitter buffer against packet sequences with loss, reordering,
duplicates and sequence wrap-around: synthetic ones checked frame by frame, and real
libx264 output packetised by aiortc, thinned by random loss and decoded by FFmpeg."""
from __future__ import annotations

import random
from fractions import Fraction

import av
import numpy as np
from aiortc.codecs import depayload, get_capabilities
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from hal.camera import stamp as stamps
from media.video.decoder import open_decoder
from media.video.jitterbuffer import LATENCY_BUDGET_S, NACK_INTERVAL_START_S, MarkerJitterBuffer

IDR = b"\x00\x00\x00\x01\x67sps\x00\x00\x00\x01\x68pps\x00\x00\x00\x01\x65idr"
P = b"\x00\x00\x00\x01\x41p"
FU = b"more"         # a continuation fragment carries no start code


class Clock:
    def __init__(self):
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def packet(seq: int, timestamp: int, marker: bool, data: bytes) -> RtpPacket:
    p = RtpPacket(payload_type=102, sequence_number=seq & 0xFFFF, timestamp=timestamp & 0xFFFFFFFF,
                  marker=int(marker), ssrc=1234)
    p._data = data
    return p


def make_stream(first_seq: int, frames: int, key_every: int, rng: random.Random):
    """(frame index, keyframe, [packets]) with 1-4 packets a frame, contiguous sequence numbers."""
    stream, seq = [], first_seq
    for i in range(frames):
        key = i % key_every == 0
        parts = [IDR if key else P] + [FU + bytes([i & 0xFF, j]) for j in range(rng.randint(0, 3))]
        stream.append((i, key, [packet(seq + j, 3000 * i, j == len(parts) - 1, part)
                                for j, part in enumerate(parts)]))
        seq += len(parts)
    return stream


class Harness:
    def __init__(self, budget_s: float = LATENCY_BUDGET_S):
        self.clock = Clock()
        self.released: list[tuple[int, bool, bytes]] = []
        self.buffer = MarkerJitterBuffer(lambda d, ts, k: self.released.append((ts // 3000, k, d)),
                                         budget_s, self.clock)
        self.plis = 0

    def add(self, p: RtpPacket) -> None:
        self.plis += self.buffer.add(p)[0]

    def tick(self, seconds: float) -> list[int]:
        self.clock.now += seconds
        nacks, pli = self.buffer.poll()
        self.plis += pli
        return nacks


def test_a_gap_is_nacked_again_on_a_timer_until_the_frames_deadline_then_skipped():
    h = Harness()
    h.add(packet(100, 0, True, IDR))
    h.add(packet(102, 3000, False, FU))               # 101, the frame's first packet, is lost
    h.add(packet(103, 3000, True, FU))
    nack_times = []
    for _ in range(int(LATENCY_BUDGET_S / 0.01) + 5):
        if 101 in h.tick(0.01):
            nack_times.append(h.clock.now)
    assert len(nack_times) >= 3, f"NACKed {len(nack_times)} times within the budget"
    assert all(g >= NACK_INTERVAL_START_S - 1e-9 for g in np.diff(nack_times))
    assert nack_times[-1] - 500.0 < LATENCY_BUDGET_S, "no NACK past the deadline"
    assert h.buffer.gaps_given_up == 0, "no frame start behind the gap yet: nothing to skip to"
    h.add(packet(104, 6000, True, P))                 # the next frame arrives
    assert h.buffer.gaps_given_up == 1 and h.plis == 1
    assert [f for f, _, _ in h.released] == [0]


def test_a_retransmission_within_the_budget_releases_the_frame_and_teaches_the_nack_interval():
    h = Harness()
    frames = make_stream(65530, 4, 60, random.Random(1))     # wraps past 65535
    held_back = frames[1][2][0]
    for _, _, packets in frames:
        for p in packets:
            if p is not held_back:
                h.add(p)
    assert [f for f, _, _ in h.released] == [0]
    assert h.tick(0.001) == [held_back.sequence_number]
    h.clock.now += 0.005
    h.add(held_back)                                   # the retransmission, 5 ms later
    assert [f for f, _, _ in h.released] == [0, 1, 2, 3]
    assert h.buffer.gaps_given_up == 0 and h.plis == 0
    assert h.buffer.recovered == 1 and h.buffer.nack_interval == 0.02   # 2 x 5 ms, clamped up


def test_a_complete_keyframe_behind_a_gap_is_skipped_to_at_once():
    h = Harness()
    frames = make_stream(10, 61, 60, random.Random(2))
    lost = frames[30][2][0]
    for _, _, packets in frames:
        for p in packets:
            if p is not lost:
                h.add(p)
    released = [f for f, _, _ in h.released]
    assert released == list(range(30)) + [60], "P frames 31..59 lost their reference"
    assert h.buffer.gaps_given_up == 1 and h.clock.now == 500.0, "no waiting for the deadline"


def test_duplicates_and_late_copies_are_released_once():
    h = Harness()
    frames = make_stream(0, 5, 60, random.Random(3))
    for _, _, packets in frames:
        for p in packets:
            h.add(p)
            h.add(p)
    h.add(frames[0][2][0])
    assert [f for f, _, _ in h.released] == [0, 1, 2, 3, 4]
    # A copy of a packet still held is a duplicate; of one already released, late.
    copies = sum(len(p) for _, _, p in frames) + 1
    assert h.buffer.duplicates + h.buffer.late_packets == copies
    assert h.buffer.late_packets >= 1 + len(frames), "every frame's marker copy came after release"


def test_random_loss_reordering_and_duplicates_never_release_a_frame_without_its_reference():
    """20 % loss, NACKs answered (when the answer is not lost too) a few ms later, local
    reordering and duplicates, across a sequence wrap: what comes out is always a keyframe
    or the direct successor of the previous frame out, intact, in order."""
    rng = random.Random(4)
    h = Harness()
    stream = make_stream(65000, 1500, 30, rng)
    source = {i: b"".join(p._data for p in packets) for i, _, packets in stream}
    by_seq = {p.sequence_number: p for _, _, packets in stream for p in packets}
    pending: list[tuple[float, RtpPacket]] = []      # (arrival time, packet)
    for i, _, packets in stream:
        t0 = h.clock.now
        for p in packets:
            if rng.random() >= 0.2:
                pending.append((t0 + rng.uniform(0, 0.006), p))    # jitter reorders
                if rng.random() < 0.03:
                    pending.append((t0 + 0.01, p))
        for step in range(4):                          # 4 x 8.3 ms = one frame at 30 fps
            h.clock.now = t0 + (step + 1) * (1 / 120)
            due = sorted((x for x in pending if x[0] <= h.clock.now), key=lambda x: x[0])
            pending = [x for x in pending if x[0] > h.clock.now]
            for _, p in due:
                h.add(p)
            for seq in h.tick(0):
                if rng.random() < 0.8 * 0.8:           # NACK and retransmission both survive
                    pending.append((h.clock.now + rng.uniform(0.004, 0.012), by_seq[seq]))
    out = h.released
    assert len(out) > 0.5 * len(stream), f"only {len(out)} of {len(stream)} frames released"
    previous = None
    for index, key, data in out:
        assert data == source[index], f"frame {index} released with wrong contents"
        assert key or index == previous + 1, f"frame {index} released after {previous}: reference lost"
        assert previous is None or index > previous
        previous = index
    assert h.buffer.recovered > 0 and h.buffer.gaps_given_up > 0


def test_real_h264_under_loss_decodes_without_errors_and_stamps_stay_in_order():
    """libx264 frames (two slices each) packetised by aiortc, 10 % of packets dropped and
    half the NACKs answered: every frame the buffer releases decodes cleanly with a
    readable stamp."""
    width, height, count = 320, 240, 150
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                   "g": "30", "slices": "2"}
    rng = np.random.default_rng(5)
    texture = (rng.integers(96, 160, (height * 3 // 2 // 8, width // 8), dtype=np.uint8)
               .repeat(8, axis=0).repeat(8, axis=1))
    packer = H264Encoder()
    codec = next(c for c in get_capabilities("video").codecs if c.mimeType == "video/H264")
    params = RTCRtpCodecParameters(mimeType=codec.mimeType, clockRate=codec.clockRate, payloadType=102)
    rtp, seq = [], 65400
    for i in range(count):
        image = np.roll(texture, 2 * i, axis=1)
        stamps.write_yuv420(image, width, height, stamps.Stamp(i, 1000 + i))
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        for encoded in ctx.encode(frame):
            payloads, _ = packer.pack(encoded)
            for j, payload in enumerate(payloads):
                p = RtpPacket(payload_type=102, sequence_number=seq & 0xFFFF, timestamp=3000 * i,
                              marker=int(j == len(payloads) - 1), ssrc=1)
                p._data = depayload(params, payload)
                rtp.append(p)
                seq += 1
    decoder, _ = open_decoder()
    h = Harness()
    lose = random.Random(6)
    by_seq = {p.sequence_number: p for p in rtp}
    answers: list[RtpPacket] = []
    for p in rtp:
        if lose.random() >= 0.1:
            h.add(p)
        for late in answers:
            h.add(late)
        # Half the NACKed packets come back one tick later; the rest stay lost.
        answers = [by_seq[s] for s in h.tick(1 / 120) if lose.random() < 0.5]
    counters = []
    for _, _, data in h.released:
        for picture in decoder.decode(data):
            stamp = stamps.read_frame(picture)
            assert stamp is not None, "a released frame decoded to a corrupt picture"
            counters.append(stamp.counter)
    assert counters == sorted(counters) and len(counters) >= 10
    assert h.buffer.gaps_given_up > 0


def test_neither_an_unread_tail_nor_a_stall_of_our_own_loop_counts_as_loss():
    h = Harness()
    h.add(packet(1, 0, True, IDR))
    h.add(packet(2, 3000, False, P))               # the frame's tail is still on its way
    h.tick(0.01)
    h.tick(0.01)
    for _ in range(30):
        h.tick(0.01)
    assert h.buffer.gaps_given_up == 0, "no later packet arrived: nothing is known lost"
    h.add(packet(3, 3000, True, FU))
    h.add(packet(5, 6000, True, P))                # 4 is missing now
    h.tick(1.0)                                    # our loop stalled for a second...
    h.add(packet(4, 6000, False, P))               # ...with 4 waiting unread in the socket
    assert [f for f, _, _ in h.released] == [0, 1, 2]
    assert h.buffer.gaps_given_up == 0 and h.plis == 0


def test_repairs_that_come_late_lengthen_the_deadline_up_to_the_budget():
    """Publisher-leg loss is repaired by the SFU's own second NACK round, ~160 ms later:
    after a few such late arrivals the buffer waits for them instead of skipping."""
    h = Harness()
    short = h.buffer._budget()
    seq, ts = 0, 0
    h.add(packet(seq, ts, True, IDR))
    for _ in range(10):
        h.add(packet(seq + 1, ts + 3000, False, P))
        lost = packet(seq + 2, ts + 3000, False, FU)
        h.add(packet(seq + 3, ts + 3000, True, FU))
        h.add(packet(seq + 4, ts + 6000, True, P))        # a frame start behind the gap
        for _ in range(int(short / 0.01) + 2):
            h.tick(0.01)                                   # deadline passes: skipped
        h.clock.now += 0.16 - short
        h.add(lost)                                        # the repair, too late
        seq, ts = seq + 5, ts + 9000
        h.add(packet(seq, ts, True, IDR))
    assert h.buffer.late_packets >= 8
    assert h.buffer.deadline_skips < 10, "once the deadline grew, the last repairs were waited for"
    assert h.buffer._budget() >= 0.2 > short, f"budget {h.buffer._budget():.3f} s"
    assert h.buffer._budget() <= LATENCY_BUDGET_S


def test_padding_between_frames_is_consumed_and_video_goes_on():
    # Chromium probes bandwidth with padding-only RTP packets in the media stream: they
    # take sequence numbers, carry the previous frame's timestamp and no payload.
    h = Harness()
    h.add(packet(100, 0, True, IDR))
    for seq in (101, 102, 103):
        h.add(packet(seq, 0, False, b""))
    h.add(packet(104, 3000, True, P))
    h.add(packet(105, 6000, False, P))
    h.add(packet(106, 6000, True, FU))
    assert [(i, k) for i, k, _ in h.released] == [(0, True), (1, False), (2, False)]
    assert h.buffer.status()["padding_packets"] == 3 and h.plis == 0 and h.buffer.frames_dropped == 0


def test_a_frame_that_cannot_complete_is_skipped_without_waiting_for_a_deadline():
    # Contiguous packets whose timestamp changes before the head frame's marker: no NACK
    # can help, so the buffer moves on at once (and waits for a keyframe).
    h = Harness()
    h.add(packet(10, 0, True, IDR))
    h.add(packet(11, 3000, False, P))            # its marker packet never comes...
    h.add(packet(12, 6000, True, P))             # ...and the next frame is already here
    h.add(packet(13, 9000, False, IDR))
    h.add(packet(14, 9000, True, FU))
    assert [(i, k) for i, k, _ in h.released] == [(0, True), (3, True)]
    assert h.buffer.frames_dropped >= 1 and h.plis == 1
