"""The marker-bit jitter buffer and the quality ladder: pure logic, driven packet by packet
and second by second."""
from __future__ import annotations

from aiortc.rtp import RtpPacket

from media.video.config import Rung, VideoConfig
from media.video.ladder import DOWN_HOLD_S, UP_HOLD_S, QualityLadder
from media.video.jitterbuffer import LATENCY_BUDGET_S, MarkerJitterBuffer, is_h264_keyframe

IDR = b"\x00\x00\x00\x01\x67sps\x00\x00\x00\x01\x68pps\x00\x00\x00\x01\x65idr"
P = b"\x00\x00\x00\x01\x41p"


def packet(seq: int, timestamp: int, marker: bool, data: bytes) -> RtpPacket:
    p = RtpPacket(payload_type=102, sequence_number=seq & 0xFFFF, timestamp=timestamp,
                  marker=int(marker))
    p._data = data
    return p


def frame_packets(first_seq: int, timestamp: int, parts: list[bytes]) -> list[RtpPacket]:
    return [packet(first_seq + i, timestamp, i == len(parts) - 1, part) for i, part in enumerate(parts)]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collector:
    def __init__(self):
        self.frames = []
        self.clock = Clock()
        self.buffer = MarkerJitterBuffer(lambda data, ts, key: self.frames.append((ts, key, data)),
                                         clock=self.clock)

    def add(self, packets):
        return [self.buffer.add(p)[0] for p in packets]


def test_keyframe_detection_looks_at_nal_types():
    assert is_h264_keyframe(IDR) and not is_h264_keyframe(P)


def test_frame_is_released_on_its_marker_without_waiting_for_the_next_frame():
    c = Collector()
    c.add(frame_packets(100, 3000, [IDR[:20], IDR[20:]]))
    assert c.frames == [(3000, True, IDR)]
    c.add(frame_packets(102, 6000, [P]))
    assert [ts for ts, _, _ in c.frames] == [3000, 6000]


def test_reordered_packets_are_assembled_in_sequence_order():
    c = Collector()
    c.add(frame_packets(65533, 3000, [IDR]))
    a, b, m = frame_packets(65534, 6000, [P[:3], P[3:5], P[5:]])   # wraps at 65535
    c.add([m, a])
    assert len(c.frames) == 1, "the middle packet is still missing"
    c.add([b])
    assert c.frames[1] == (6000, False, P)
    c.add(frame_packets(1, 9000, [P]))
    assert [ts for ts, _, _ in c.frames] == [3000, 6000, 9000]
    assert c.buffer.status()["late_packets"] == 0


def test_unfilled_gap_is_given_up_at_its_deadline_and_frames_wait_for_a_keyframe_with_one_pli():
    c = Collector()
    c.add(frame_packets(10, 3000, [IDR]))
    lost = frame_packets(11, 6000, [P, P])
    plis = c.add([lost[0]])                      # lost[1] (the marker) never arrives
    for i in range(3):                           # three later P frames complete
        plis += c.add(frame_packets(13 + i, 9000 + 3000 * i, [P]))
    assert c.buffer.gaps_given_up == 0, "within the latency budget we wait for the NACK"
    for _ in range(int(LATENCY_BUDGET_S / 0.01) + 1):    # the receiver's 10 ms timer
        c.clock.now += 0.01
        plis.append(c.buffer.poll()[1])
    assert c.buffer.gaps_given_up == 1
    assert [key for _, key, _ in c.frames] == [True], "no P frame decoded on a broken reference"
    plis += c.add(frame_packets(16, 18000, [P]))
    assert plis.count(True) == 1, "one PLI, not one per dropped frame"
    c.add(frame_packets(17, 21000, [IDR]))
    c.add(frame_packets(18, 24000, [P]))
    assert [(ts, key) for ts, key, _ in c.frames] == [(3000, True), (21000, True), (24000, False)]


def test_joining_mid_stream_drops_until_a_keyframe_and_asks_for_one():
    c = Collector()
    plis = c.add(frame_packets(500, 3000, [P]))
    assert c.frames == [] and plis == [True]
    c.add(frame_packets(501, 6000, [IDR]))
    assert [key for _, key, _ in c.frames] == [True]


def test_ladder_steps_down_on_sustained_starvation_or_load_and_back_up_slowly():
    rungs = VideoConfig().rungs(1920, 1080, 30)
    assert [str(r) for r in rungs] == ["1920x1080@30", "1280x720@30", "1280x720@15", "640x360@15"]
    ladder = QualityLadder(rungs)
    assert ladder.update(0.0, 800_000, 0.3) == 0
    assert ladder.update(DOWN_HOLD_S - 0.1, 800_000, 0.3) == 0, "a short dip changes nothing"
    assert ladder.update(DOWN_HOLD_S, 800_000, 0.3) == 1       # 1080p30 needs ~2.5 Mbit/s
    assert ladder.update(DOWN_HOLD_S + 1, 800_000, 0.3) == 1, "each step has its own hold"
    assert ladder.update(DOWN_HOLD_S * 2 + 1, 800_000, 0.3) == 2   # 720p30 needs ~1.1
    t = 10.0
    assert ladder.update(t, None, 0.95) == 2
    assert ladder.update(t + DOWN_HOLD_S, None, 0.95) == 3, "CPU overload steps down too"
    assert ladder.update(t + 10, 5_000_000, 0.05) == 3
    assert ladder.update(t + 10 + UP_HOLD_S - 0.1, 5_000_000, 0.05) == 3, "up is slow"
    assert ladder.update(t + 10 + UP_HOLD_S, 5_000_000, 0.05) == 2
    assert "recovered" in ladder.last_reason
    assert ladder.rungs[ladder.index] == Rung(1280, 720, 15)


async def test_rembs_are_throttled_to_one_per_200_ms_unless_the_estimate_drops():
    """aiortc's estimator asks for a REMB on every packet while it sees overuse; the
    receiver passes one per 200 ms (or a fall of more than 3 %), other RTCP untouched."""
    from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

    from media.video.receiver import REMB_MIN_GAP_S, VideoReceiver

    class AiortcReceiverSeam:                # the one method the throttle wraps
        def __init__(self):
            self.sent = []

        async def _send_rtcp(self, packet):
            self.sent.append(packet)

    def remb(bitrate):
        return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bitrate, [5]))

    seam = AiortcReceiverSeam()
    receiver = VideoReceiver()
    now = [10.0]
    receiver.clock = lambda: now[0]
    receiver._throttle_remb(seam)
    for _ in range(50):                                   # a storm at one estimate
        await seam._send_rtcp(remb(1_000_000))
    await seam._send_rtcp(remb(990_000))                  # -1 %: held back
    await seam._send_rtcp(remb(900_000))                  # -10 %: goes at once
    await seam._send_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=5))
    assert [getattr(p, "fmt", None) for p in seam.sent] == [RTCP_PSFB_APP, RTCP_PSFB_APP, RTCP_PSFB_PLI]
    assert receiver.rembs_sent == 2 and receiver.rembs_held_back == 50
    now[0] += REMB_MIN_GAP_S + 0.01
    await seam._send_rtcp(remb(900_000))                  # the interval passed: sent
    assert receiver.rembs_sent == 3
