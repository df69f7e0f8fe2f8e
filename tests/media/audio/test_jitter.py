"""OpusPlayout against packet sequences made with real libopus (espeak-ng speech, 20 ms
packets, in-band FEC on): loss, reordering, duplicates, late packets, 32-bit timestamp
wrap-around, stream jumps, and the adaptive playout delay. Arrival times are given, and
a virtual clock pops every slot once it is due, as AudioReceiver.recv() does."""
from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from media.audio.jitter import FRAME_SAMPLES, MIN_DELAY_S, AudioReceiver, OpusPlayout
from media.audio.opus import OpusDecoder, OpusEncoder, OpusError, packet_samples
from tests.media.audio.speech_call import speech

PACKET_S = FRAME_SAMPLES / 48000
START_TS = 123_456


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    """100 packets (2 s) of speech, FEC planned for 20 % loss (what the sender does)."""
    signal = speech(2.0)
    encoder = OpusEncoder(64000, fec=True, packet_loss_pct=20)
    return [encoder.encode(signal[i:i + FRAME_SAMPLES]) for i in range(0, len(signal), FRAME_SAMPLES)]


@pytest.fixture(scope="module")
def lossless(packets) -> np.ndarray:
    decoder = OpusDecoder()
    return np.concatenate([decoder.decode(p) for p in packets]).astype(np.float64)


def arrivals(packets, start_ts=START_TS, skip=(), jitter_s=None, seed=0):
    """(arrival_s, timestamp, payload) for each packet sent every 20 ms, minus ``skip``."""
    rng = np.random.default_rng(seed)
    out = []
    for index, payload in enumerate(packets):
        if index in skip:
            continue
        late = 0.0 if jitter_s is None else float(rng.uniform(0, jitter_s))
        out.append((1.0 + index * PACKET_S + late, (start_ts + index * FRAME_SAMPLES) & 0xFFFFFFFF, payload))
    return out


def play(playout: OpusPlayout, events, slots: int = 100, step_s: float = 0.001):
    """Feed ``events`` (arrival, ts, payload) in arrival order on a virtual clock, popping
    each slot when due, until ``slots`` were played; returns [(pts, samples, popped_at)]."""
    events = sorted(events, key=lambda e: e[0])
    end = events[-1][0] + 1.0
    out, index, now = [], 0, events[0][0]
    while now <= end and len(out) < slots:
        while index < len(events) and events[index][0] <= now:
            arrival, ts, payload = events[index]
            playout.add(ts, payload, arrival)
            index += 1
        while (due := playout.due_s()) is not None and due <= now and len(out) < slots:
            pts, samples = playout.pop()
            out.append((pts, samples, now))
        now += step_s
    return out


def timeline(frames) -> np.ndarray:
    return np.concatenate([s for _, s, _ in frames]).astype(np.float64)


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference ** 2) / max(1e-9, np.sum((reference - other) ** 2))))


def test_every_packet_in_order_is_played_once_with_contiguous_pts(packets, lossless):
    playout = OpusPlayout()
    frames = play(playout, arrivals(packets))
    assert [pts for pts, _, _ in frames] == [i * FRAME_SAMPLES for i in range(len(packets))]
    assert np.array_equal(timeline(frames), lossless)
    assert playout.status()["decoded"] == len(packets)
    assert playout.fec_recovered == playout.concealed == playout.late == 0


def test_slot_is_due_one_packet_plus_margin_after_its_arrival(packets):
    playout = OpusPlayout()
    assert playout.due_s() is None
    frames = play(playout, arrivals(packets[:10]), slots=10)
    waits = [at - (1.0 + i * PACKET_S) for i, (_, _, at) in enumerate(frames)]
    assert all(MIN_DELAY_S - 0.002 <= w <= MIN_DELAY_S + 0.012 for w in waits), waits


def test_a_lost_packet_is_rebuilt_from_the_next_packets_fec(packets, lossless):
    lost = 40
    with_fec = play(OpusPlayout(), arrivals(packets, skip={lost}))
    slot = slice(lost * FRAME_SAMPLES, (lost + 1) * FRAME_SAMPLES)
    concealing = OpusDecoder()
    concealed = np.concatenate([concealing.conceal(FRAME_SAMPLES) if i == lost else concealing.decode(p)
                                for i, p in enumerate(packets)]).astype(np.float64)
    recovered = timeline(with_fec)
    assert len(recovered) == len(lossless)
    # FEC is a lower-rate copy of the lost slot: clearly closer to it than concealment.
    assert snr_db(lossless[slot], recovered[slot]) > snr_db(lossless[slot], concealed[slot]) + 2
    assert snr_db(lossless[slot], recovered[slot]) > 2


def test_two_lost_in_a_row_conceal_the_first_and_recover_the_second(packets, lossless):
    playout = OpusPlayout()
    frames = play(playout, arrivals(packets, skip={30, 31}))
    assert (playout.decoded, playout.concealed, playout.fec_recovered) == (len(packets) - 2, 1, 1)
    assert len(timeline(frames)) == len(lossless)


def test_heavy_loss_still_yields_one_slot_per_20_ms(packets):
    rng = np.random.default_rng(7)
    lost = {i for i in range(1, len(packets)) if rng.random() < 0.5}
    playout = OpusPlayout()
    frames = play(playout, arrivals(packets, skip=lost))
    assert [pts for pts, _, _ in frames] == [i * FRAME_SAMPLES for i in range(len(packets))]
    assert playout.decoded == len(packets) - len(lost)
    assert playout.fec_recovered + playout.concealed >= len(lost)
    assert playout.fec_recovered >= len(lost) // 3


def test_reordered_packets_within_the_delay_play_as_if_in_order(packets, lossless):
    events = arrivals(packets)
    for i in range(10, 90, 10):                      # swap neighbours: i+1 overtakes i by 5 ms
        (a0, t0, p0), (a1, t1, p1) = events[i], events[i + 1]
        events[i], events[i + 1] = (a1 + 0.005, t0, p0), (a1, t1, p1)
    playout = OpusPlayout()
    frames = play(playout, events)
    assert np.array_equal(timeline(frames), lossless)
    assert playout.late == playout.concealed == 0


def test_duplicates_are_counted_and_ignored(packets, lossless):
    events = arrivals(packets)
    events += [(a + 0.002, t, p) for a, t, p in events[20:25]]
    playout = OpusPlayout()
    frames = play(playout, events)
    assert playout.duplicates == 5
    assert np.array_equal(timeline(frames), lossless)


def test_a_packet_after_its_slot_is_late_and_not_played(packets, lossless):
    events = arrivals(packets)
    arrival, ts, payload = events[50]
    events[50] = (arrival + 0.3, ts, payload)        # long after its slot was due
    playout = OpusPlayout()
    frames = play(playout, events)
    assert playout.late == 1 and playout.fec_recovered == 1
    assert len(timeline(frames)) == len(lossless)


def test_timestamps_wrapping_past_2_to_the_32_play_contiguously(packets, lossless):
    start = (1 << 32) - 10 * FRAME_SAMPLES
    playout = OpusPlayout()
    frames = play(playout, arrivals(packets, start_ts=start, skip={10}))   # lost right after the wrap
    assert [pts for pts, _, _ in frames] == [i * FRAME_SAMPLES for i in range(len(packets))]
    assert playout.fec_recovered == 1 and playout.resyncs == 0 and playout.late == 0


def test_a_timestamp_jump_resyncs_without_a_pts_jump(packets):
    events = arrivals(packets[:50])
    jumped = arrivals(packets[50:], start_ts=START_TS + 10_000_000)
    events += [(a + 50 * PACKET_S, t, p) for a, t, p in jumped]
    playout = OpusPlayout()
    frames = play(playout, events)
    assert playout.resyncs == 1
    pts = [p for p, _, _ in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert max(np.diff(pts)) == FRAME_SAMPLES
    assert playout.decoded >= len(packets) - 2


def test_playout_delay_grows_with_jitter_and_keeps_late_packets_rare(packets):
    steady, jittery = OpusPlayout(), OpusPlayout()
    play(steady, arrivals(packets))
    play(jittery, arrivals(packets, jitter_s=0.060, seed=3))
    assert steady.delay_s == pytest.approx(MIN_DELAY_S + 0.005, abs=0.006)
    assert jittery.delay_s > steady.delay_s + 0.035
    assert jittery.late <= 8                          # the first packets, before it adapted


def test_invalid_payload_is_concealed_not_fatal(packets):
    events = arrivals(packets[:20])
    arrival, ts, _ = events[5]
    events[5] = (arrival, ts, b"\xff\xff\xff")       # code-3 packet with an impossible count
    playout = OpusPlayout()
    frames = play(playout, events, slots=20)
    assert len(frames) == 20 and playout.invalid == 1
    with pytest.raises(OpusError, match="opus: reading the duration"):
        packet_samples(b"\xff\xff\xff")


def test_pop_before_the_first_packet_is_refused():
    with pytest.raises(RuntimeError, match="before the first packet"):
        OpusPlayout().pop()


def _rtp(index: int, payload: bytes, first_seq: int = 0) -> RtpPacket:
    return RtpPacket(payload_type=111, sequence_number=(first_seq + index) & 0xFFFF,
                     timestamp=START_TS + index * FRAME_SAMPLES, ssrc=1, payload=payload)


async def test_receiver_plays_through_aiortcs_jitter_buffer_slot_as_paced_frames(packets):
    receiver = AudioReceiver()
    aiortc_receiver = SimpleNamespace(track=None)    # the two attributes attach() touches
    receiver.attach(aiortc_receiver)
    tap = aiortc_receiver._RTCRtpReceiver__jitter_buffer
    # Sequence numbers 65534, 65535, 0: order comes from the timestamps, so the wrap is moot.
    added = [tap.add(_rtp(i, packets[i], first_seq=65534)) for i in range(3)]
    assert added == [(False, None)] * 3                # aiortc's own decoder gets nothing
    async with asyncio.timeout(2):
        frames = [await receiver.recv() for _ in range(3)]
    assert [(f.pts, f.samples, f.sample_rate, f.layout.name) for f in frames] == \
        [(i * FRAME_SAMPLES, FRAME_SAMPLES, 48000, "mono") for i in range(3)]


async def test_receiver_lets_packets_queued_during_a_stall_in_before_concealing(packets):
    receiver = AudioReceiver()
    for i in range(3):
        receiver._on_packet(_rtp(i, packets[i]))
    async with asyncio.timeout(2):
        for _ in range(3):
            await receiver.recv()
        # The event loop is stuck past slot 3's playout time (what is under test, hence a
        # blocking sleep); slot 3's packet arrived meanwhile and is handled right after.
        time.sleep(0.1)
        asyncio.get_running_loop().call_soon(receiver._on_packet, _rtp(3, packets[3]))
        frame = await receiver.recv()
    assert frame.pts == 3 * FRAME_SAMPLES
    assert (receiver.playout.decoded, receiver.playout.concealed, receiver.stall_graces) == (4, 0, 1)
