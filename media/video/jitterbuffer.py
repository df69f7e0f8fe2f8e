"""A video jitter buffer with a latency budget: frames leave on their RTP marker bit, a gap
is NACKed on a timer until its deadline, then skipped — never waited on for seconds, and no
frame whose reference is gone reaches the decoder.

Why not aiortc's: its video buffer releases a frame only once all its packets are there,
with no time limit (one unrecovered packet blocks video until 512 more arrive, ~2.4 s), its
NackGenerator NACKs a gap once, and after a loss it decodes P-frames whose reference is
missing (corrupt pictures until the next keyframe). Here:
- a frame is released as soon as every packet from its first to its marker is held,
  whatever order they came in (no frame of added latency);
- each missing sequence number is NACKed when the gap appears and again every
  ``nack_interval`` (twice the measured retransmission delay, clamped) until the frame
  blocking on it reaches its deadline (``_budget()``: four NACK intervals, 60..250 ms);
- a blocked frame is given up at its deadline, or at once when waiting cannot help (we are
  already dropping until a keyframe, or a complete keyframe is waiting behind the gap);
  after a skip every frame is dropped until a keyframe, and one rate-limited PLI asks for it.
Through Janus 1.1.2 the budget is short on purpose: Janus retransmits a packet to a viewer
at most once per 200 ms (MAX_NACK_IGNORE) and keeps it about that long, so once the first
answer is overdue (a few NACK intervals) waiting mostly adds freeze; it NACKs a publisher at
~12 ms and ~155 ms, hence the 250 ms ceiling when answers are measured to come late.
(Janus 1.1.2 also keeps no retransmission buffer for a viewer until its RTT estimate has
changed once: on a link whose RTT rounds to 0 ms it never retransmits at all.)
Pure logic on the event loop with an injectable clock; ``VideoReceiver`` drives the timer.
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Any, Callable

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.video.fec_stream import FecRepair

LATENCY_BUDGET_S = 0.25       # Janus NACKs a publisher again at ~155 ms; its answer comes later
BUDGET_FLOOR_S = 0.06
BUDGET_NACK_ROUNDS = 4
PLI_MIN_GAP_S = 0.3
LAG_S = 0.05                  # a poll tick this late means the event loop stalled
# Once a PLI went out, another one only if no keyframe has started arriving this long
# after it. Every new keyframe makes Janus drop older packets from its retransmission
# buffer, so asking again while one is being repaired by NACK starves it (measured: at
# 10 % loss, a PLI every 0.3 s left no keyframe complete for seconds).
KEYFRAME_RETRY_S = 0.6
NACK_INTERVAL_MIN_S = 0.02
NACK_INTERVAL_MAX_S = 0.1
NACK_INTERVAL_START_S = 0.04
MAX_BUFFERED_PACKETS = 1024
STARTUP_REORDER_PACKETS = 64
RTX_DELAY_SAMPLES = 32
REPAIR_SAMPLES = 64           # loss → arrival delays, late arrivals included
REPAIR_QUANTILE = 0.9
REPAIR_MARGIN = 1.3
GIVEN_UP_KEPT = 512
START_CODES = (b"\x00\x00\x00\x01", b"\x00\x00\x01")


def seq_delta(a: int, b: int) -> int:
    """a - b in RTP sequence space (-32768..32767)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def _nal_types(annexb: bytes):
    start = annexb.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(annexb):
        yield annexb[start + 3] & 0x1F
        start = annexb.find(b"\x00\x00\x01", start + 3)


def is_h264_keyframe(annexb: bytes) -> bool:
    """True if the access unit holds an IDR slice or an SPS (NAL types 5, 7)."""
    return any(t in (5, 7) for t in _nal_types(annexb))


def _starts_keyframe(data: bytes, at_frame_start: bool = False) -> bool:
    """A packet that opens a keyframe: its first NAL is an SPS (encoders repeat SPS/PPS
    before each IDR), or an IDR slice where we know a frame starts. An IDR slice alone could
    be a keyframe's second slice, whose first one was lost."""
    if not data.startswith(START_CODES):
        return False
    first = next(_nal_types(data), None)
    return first == 7 or (at_frame_start and first == 5)


class MarkerJitterBuffer(JitterBuffer):
    """Reassembles frames from depayloaded RTP packets and hands each decodable one to
    ``on_frame(data, rtp_timestamp, is_keyframe)`` at once. ``add()`` keeps aiortc's
    contract — ``(pli_wanted, None)`` — and never returns a frame, so aiortc's own decoder
    stays idle. ``poll()`` (every ~10 ms) applies deadlines without new packets and returns
    the sequence numbers to NACK now and whether to send a PLI."""

    def __init__(self, on_frame: Callable[[bytes, int, bool], None],
                 budget_s: float = LATENCY_BUDGET_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(capacity=MAX_BUFFERED_PACKETS, is_video=True)
        self._on_frame = on_frame
        self.budget_s = budget_s
        self._clock = clock
        self._packets: dict[int, RtpPacket] = {}
        self._next_seq: int | None = None
        self._highest: int | None = None
        self._missing: dict[int, float] = {}      # seq → when we learnt it is missing
        self._nacked: dict[int, float] = {}       # seq → when we last NACKed it
        self._rtx_delays: deque[float] = deque(maxlen=RTX_DELAY_SAMPLES)
        # How long repairs take, from the loss being known to the packet arriving — also
        # for packets that came after we gave up on them (they say the deadline was short).
        self._repair_delays: deque[float] = deque(maxlen=REPAIR_SAMPLES)
        self._given_up: dict[int, float] = {}      # seq → when it was known missing
        self._fec_delays: deque[float] = deque(maxlen=REPAIR_SAMPLES)   # loss → rebuilt
        self._blocked_since: float | None = None
        self._last_poll: float | None = None
        self._lagging = False
        # False until a frame boundary has been seen (we may join mid-frame).
        self._at_frame_start = False
        self.needs_keyframe = True
        self._last_pli = float("-inf")
        # No PLI up front: a sender starts with a keyframe anyway; joining mid-stream, the
        # first dropped non-keyframe asks for one.
        self._pli_wanted = False
        self.ssrc: int | None = None
        # In-band FEC (fec.py): parity packets sit in the stream as empty placeholders, and
        # sequence numbers known to be parity are filled with placeholders even if lost.
        self.fec = FecRepair()
        self._known_parity: dict[int, int] = {}   # seq → timestamp of its access unit
        self.frames_released = 0
        self.keyframes_released = 0
        self.frames_dropped = 0
        self.gaps_given_up = 0
        self.deadline_skips = 0
        self.late_packets = 0
        self.duplicates = 0
        self.padding_packets = 0
        self.nacks_sent = 0
        self.recovered = 0
        self.fec_rebuilt = 0
        self.parity_placeholders = 0

    def request_keyframe(self) -> None:
        """Drop frames until a keyframe and ask the sender for one (e.g. decoder error)."""
        self.needs_keyframe = True
        self._pli_wanted = True

    # ---- packets in ------------------------------------------------------------------

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        now = self._clock()
        self.ssrc = packet.ssrc
        seq = packet.sequence_number
        if self._next_seq is None:
            self._next_seq = self._highest = seq
        delta = seq_delta(seq, self._next_seq)
        if delta < 0 and self._nothing_released() and delta > -STARTUP_REORDER_PACKETS:
            # Before the first frame, the first packet seen need not be the earliest one.
            self._next_seq, delta = seq, 0
        if delta >= MAX_BUFFERED_PACKETS:
            self._restart_at(seq)          # the stream jumped (sender restart, SSRC reuse)
            delta = 0
        parity = self.fec.parse(packet)
        if parity is not None:
            # Filed even when its slot is already taken by a placeholder or released: its
            # block may still rebuild the frame before it.
            packet._data = b""         # no picture in it; a decoder would skip it anyway
            for known, timestamp in self.fec.on_parity(packet, parity):
                if seq_delta(known, self._next_seq) >= 0:
                    self._known_parity.setdefault(known, timestamp)
        stored = False
        if delta < 0:
            self.late_packets += parity is None     # already released or given up
            since = self._given_up.pop(seq, None)
            if since is not None:
                self._repair_delays.append(now - since)
        elif seq in self._packets:
            self.duplicates += parity is None or self._packets[seq].payload == packet.payload
        else:
            self._store(packet, now)
            stored = True
        if stored or parity is not None:
            if self._known_parity:
                self._fill_known_parity()
            if self.fec.has_words:
                for rebuilt in self.fec.rebuild(self._missing, self._packets):
                    self._store(rebuilt, now, rebuilt_by_fec=True)
            self._release(now)
        return self._take_pli(now), None

    def _fill_known_parity(self) -> None:
        """Missing sequence numbers that parity packets say are parity: nothing of the
        picture is lost there, so they take an empty placeholder instead of a NACK."""
        for seq in [s for s in self._known_parity if s in self._missing]:
            placeholder = RtpPacket(sequence_number=seq, timestamp=self._known_parity[seq])
            placeholder._data = b""
            self._packets[seq] = placeholder
            del self._missing[seq]
            self._nacked.pop(seq, None)
            self.parity_placeholders += 1

    def _store(self, packet: RtpPacket, now: float, rebuilt_by_fec: bool = False) -> None:
        seq = packet.sequence_number
        self._packets[seq] = packet
        if seq_delta(seq, self._highest) > 0:
            s = (self._highest + 1) & 0xFFFF
            while s != seq:
                self._missing[s] = now
                s = (s + 1) & 0xFFFF
            self._highest = seq
        elif rebuilt_by_fec:
            # Not a retransmission: its delay says nothing about how long NACKs take, but
            # says how long the parity (sent with the next frame) takes to come.
            if (since := self._missing.pop(seq, None)) is not None:
                self._fec_delays.append(now - since)
            self._nacked.pop(seq, None)
            self.fec_rebuilt += 1
        elif (since := self._missing.pop(seq, None)) is not None:
            self._repair_delays.append(now - since)
            nacked = self._nacked.pop(seq, None)
            if nacked is not None:
                self.recovered += 1
                self._rtx_delays.append(now - nacked)

    def _nothing_released(self) -> bool:
        return self.frames_released == 0 and self.frames_dropped == 0 and self.gaps_given_up == 0

    def _restart_at(self, seq: int) -> None:
        self._packets.clear()
        self._missing.clear()
        self._nacked.clear()
        self._known_parity.clear()
        self.fec.clear()
        self._next_seq = self._highest = seq
        self._blocked_since = None
        self._at_frame_start = False
        self.request_keyframe()

    # ---- timer -----------------------------------------------------------------------

    @property
    def nack_interval(self) -> float:
        """Twice the median NACK→retransmission delay seen, within 20..100 ms."""
        if not self._rtx_delays:
            return NACK_INTERVAL_START_S
        return min(NACK_INTERVAL_MAX_S, max(NACK_INTERVAL_MIN_S, 2 * statistics.median(self._rtx_delays)))

    def poll(self) -> tuple[list[int], bool]:
        """Apply deadlines; returns (sequence numbers to NACK now, send a PLI now)."""
        now = self._clock()
        # After a stall of our own event loop the timer may run before the packets that
        # queued up meanwhile are read: no deadline is applied on such a tick.
        self._lagging = self._last_poll is not None and now - self._last_poll > LAG_S
        self._last_poll = now
        try:
            if self._next_seq is not None:
                self._release(now)
        finally:
            self._lagging = False
        due, interval = [], self.nack_interval
        budget = self._budget()
        for seq, since in self._missing.items():
            if now - since < budget and now - self._nacked.get(seq, float("-inf")) >= interval:
                self._nacked[seq] = now
                due.append(seq)
        self.nacks_sent += bool(due)
        return due, self._take_pli(now)

    # ---- frames out ------------------------------------------------------------------

    def _release(self, now: float) -> None:
        while True:
            head = self._packets.get(self._next_seq)
            if head is not None and not head._data and not head.marker:
                # Padding only (Chromium probes bandwidth this way), or FEC parity: it takes
                # a sequence number but holds no picture; without this the head frame never forms.
                self.padding_packets += not head.payload and self._next_seq not in self._known_parity
                self._forget_through(self._next_seq)
                continue
            frame = self._complete_frame_at(self._next_seq)
            if frame is not None:
                packets, end_seq = frame
                self._forget_through(end_seq)
                self._blocked_since = None
                self._emit(packets)
                self._at_frame_start = True
                continue
            if not self._packets:
                return
            if self._blocked_since is None:
                self._blocked_since = now
            if self._lagging:
                return     # our own loop stalled: packets may be waiting unread
            if len(self._packets) > MAX_BUFFERED_PACKETS:
                self._restart_at((self._highest + 1) & 0xFFFF)    # no frame start in sight
                return
            # The clock runs from when a loss was known (a later packet arrived), not from
            # the frame's first packet: a frame whose tail simply has not been read yet
            # (a busy loop, a slow sender) is not late.
            lost_since = min(self._missing.values(), default=None)
            expired = lost_since is not None and now - lost_since >= self._budget()
            if expired or self._waiting_is_useless():
                if not self._skip_gap():
                    return
                self.deadline_skips += expired
                continue
            return

    def _complete_frame_at(self, seq: int) -> tuple[list[RtpPacket], int] | None:
        first = self._packets.get(seq)
        if first is None:
            return None
        packets = []
        while True:
            packet = self._packets.get(seq)
            if packet is None or packet.timestamp != first.timestamp:
                return None
            packets.append(packet)
            if packet.marker:
                return packets, seq
            seq = (seq + 1) & 0xFFFF

    def _budget(self) -> float:
        """How long a blocked frame may wait, within ``BUDGET_FLOOR_S``..``budget_s``: a few
        NACK rounds, or longer when repairs are measured to take longer (the 90th
        percentile of loss→arrival delays, late arrivals included, plus a margin; the same
        for loss→FEC rebuild, the parity coming with the next frame).
        Janus 1.1.2 answers a viewer's NACK once per 200 ms: there, waiting past the first
        answer mostly adds freeze. A publisher leg is repaired by Janus's own NACKs to the
        publisher at ~12 ms and ~155 ms: there, the second round is worth waiting for."""
        wanted = BUDGET_NACK_ROUNDS * self.nack_interval
        for delays in (self._repair_delays, self._fec_delays):
            if len(delays) >= 8:
                ordered = sorted(delays)
                wanted = max(wanted, REPAIR_MARGIN * ordered[int(REPAIR_QUANTILE * (len(ordered) - 1))])
        return min(self.budget_s, max(BUDGET_FLOOR_S, wanted))

    def _keyframe_arriving(self) -> bool:
        return any(_starts_keyframe(p._data) for p in self._packets.values())

    def _waiting_is_useless(self) -> bool:
        """True when the blocked frame cannot be decoded anyway (we drop until a keyframe and
        it is not one), or a keyframe is complete behind it."""
        head = self._packets.get(self._next_seq)
        if self.needs_keyframe and head is not None and not _starts_keyframe(head._data):
            return True
        if self._head_cannot_complete():
            return True
        return any(_starts_keyframe(p._data) and self._complete_frame_at(s) is not None
                   for s, p in self._packets.items() if s != self._next_seq)

    def _head_cannot_complete(self) -> bool:
        """The held packets from the head on change timestamp before any marker, with none
        missing in between: that frame can never complete, and no NACK will help."""
        head = self._packets.get(self._next_seq)
        seq = self._next_seq
        while head is not None:
            packet = self._packets.get(seq)
            if packet is None:
                return False                 # a gap: a retransmission may still fill it
            if packet.timestamp != head.timestamp:
                return True
            if packet.marker:
                return False
            seq = (seq + 1) & 0xFFFF
        return False

    def _frame_starts(self) -> list[int]:
        """Held sequence numbers known to open a frame, in sequence order: the packet after
        a held marker or after a held packet of another frame, or a keyframe's first packet."""
        starts = []
        for seq, packet in self._packets.items():
            before = self._packets.get((seq - 1) & 0xFFFF)
            if (before is not None and (before.marker or before.timestamp != packet.timestamp)) \
                    or _starts_keyframe(packet._data):
                starts.append(seq)
        return sorted(starts, key=lambda s: seq_delta(s, self._next_seq))

    def _skip_gap(self) -> bool:
        """Give up on the blocked frame: resume at the next frame start held (after the head)
        and wait for a keyframe, the references being broken. False if nothing to skip to
        yet (the packets held all belong to the blocked frame): keep them, the next frame's
        start will come."""
        starts = [s for s in self._frame_starts() if seq_delta(s, self._next_seq) > 0]
        if not starts:
            return False
        self.gaps_given_up += 1
        self.frames_dropped += 1
        self._forget_through((starts[0] - 1) & 0xFFFF)
        self._blocked_since = None
        self._at_frame_start = True
        self.request_keyframe()
        return True

    def _forget_through(self, end_seq: int) -> None:
        """Drop every packet and missing mark up to ``end_seq``; resume after it."""
        for seq in [s for s in self._missing if seq_delta(s, end_seq) <= 0]:
            self._given_up[seq] = self._missing.pop(seq)
        while len(self._given_up) > GIVEN_UP_KEPT:
            del self._given_up[next(iter(self._given_up))]
        for table in (self._packets, self._nacked, self._known_parity):
            for seq in [s for s in table if seq_delta(s, end_seq) <= 0]:
                del table[seq]
        self.fec.forget(lambda first: seq_delta(first, end_seq) > 0)
        self._next_seq = (end_seq + 1) & 0xFFFF
        if seq_delta(self._highest, self._next_seq) < 0:
            self._highest = end_seq

    def _emit(self, packets: list[RtpPacket]) -> None:
        data = b"".join(p._data for p in packets)
        keyframe = _starts_keyframe(data, self._at_frame_start)
        if self.needs_keyframe and not keyframe:
            self.frames_dropped += 1
            if not self._keyframe_arriving() and self._clock() - self._last_pli >= KEYFRAME_RETRY_S:
                self._pli_wanted = True
            return
        self.needs_keyframe = False
        self.frames_released += 1
        self.keyframes_released += keyframe
        self._on_frame(data, packets[0].timestamp, keyframe)

    def _take_pli(self, now: float) -> bool:
        if not self._pli_wanted or now - self._last_pli < PLI_MIN_GAP_S:
            return False
        self._last_pli = now
        self._pli_wanted = False
        return True

    def status(self) -> dict[str, Any]:
        return {"released": self.frames_released, "keyframes": self.keyframes_released,
                "dropped": self.frames_dropped, "gaps_given_up": self.gaps_given_up,
                "deadline_skips": self.deadline_skips,
                "late_packets": self.late_packets, "duplicates": self.duplicates,
                "padding_packets": self.padding_packets,
                "nacks": self.nacks_sent, "recovered": self.recovered,
                "fec_parity": self.fec.parity_received, "fec_rebuilt": self.fec_rebuilt,
                "fec_placeholders": self.parity_placeholders,
                "nack_interval_ms": round(self.nack_interval * 1000, 1),
                "budget_ms": round(self._budget() * 1000)}
