"""Receiving a remote participant's Opus: every packet that arrives is played, each 20 ms
slot is due at an adaptive playout time, and a slot whose packet is missing is rebuilt
from the next packet's in-band FEC or, failing that, concealed by Opus's PLC.

aiortc's audio ``JitterBuffer(16, prefetch=4)`` releases a frame only once the next four
packets are there, so at 10 % loss it throws away ~40 % of the audio that did arrive, and
it never conceals. ``OpusPlayout`` is the replacement's logic (no I/O, no clock of its
own: tests drive it with packet sequences made by libopus); ``AudioReceiver`` wires it into one
aiortc RTCRtpReceiver (an instance attribute, as media/video/receiver.py does for video)
and is the aiortc-shaped track whose ``recv()`` paces the frames out.

Playout time of the slot starting at RTP timestamp T (extended to 64 bits) is
``T / 48 kHz + base + delay``: ``base`` is the smallest transit time (arrival minus media
time) over the last ``WINDOW_PACKETS`` packets, ``delay`` one packet time (so the next
packet, which carries the FEC for this one, is normally there) plus the 95th percentile
of the transit jitter plus a margin. Late packets raise the percentile, so the delay
grows where the network is jittery and shrinks back as they leave the window.

Packets are keyed by timestamp, so the copies media/audio/opus_sender.py sends at high loss
(same timestamp, own sequence numbers) and any retransmitted duplicate are kept once.
"""
from __future__ import annotations

import asyncio
import collections
import fractions
import time
from typing import Any, Callable

import av
import numpy as np
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from media.audio.opus import SAMPLE_RATE, OpusDecoder, OpusError, packet_samples

FRAME_SAMPLES = 960                # 20 ms: what aiortc and browsers send
WINDOW_PACKETS = 100               # ~2 s of transit times for base and jitter
JITTER_QUANTILE = 0.95
MARGIN_S = 0.010                   # scheduling slack of the event loop
MIN_DELAY_S = 0.025
MAX_DELAY_S = 0.300
RESYNC_S = 2.0                     # a timestamp this far off the playout point: a new stream
MAX_BUFFERED_PACKETS = 256         # ~5 s of audio: beyond that something is wrong
IDLE_POLL_S = 0.020                # waiting for the first packet
STALL_S = 0.010                    # woke this late: the event loop was busy elsewhere...
STALL_GRACE_S = 0.005              # ...so let packets it queued meanwhile in before concealing
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class OpusPlayout:
    """Orders received Opus packets by RTP timestamp and produces one slot at a time.

    ``add(timestamp, payload, arrival_s)`` for every packet (duplicates, reordering, late
    packets and 32-bit timestamp wrap-around are handled); ``due_s()`` says when the next
    slot must be played (None before the first packet); ``pop()`` decodes it — the packet
    itself, else in-band FEC from the next packet, else concealment — and returns
    ``(pts, samples)`` with pts in samples since the first packet. Times in seconds on
    any monotonic clock. Not thread-safe; runs on the event loop.
    """

    def __init__(self, decoder: OpusDecoder | None = None) -> None:
        self._decoder = decoder or OpusDecoder()
        self._packets: dict[int, bytes] = {}
        self._transits: collections.deque[float] = collections.deque(maxlen=WINDOW_PACKETS)
        self._last_ext: int | None = None        # extended timestamp of the newest packet
        self._first: int | None = None           # extended timestamp of pts 0
        self._next: int | None = None            # the slot to play next
        self._frame_samples = FRAME_SAMPLES
        self._delay_s = MIN_DELAY_S
        self._base_s = 0.0
        self.received = self.duplicates = self.late = self.invalid = 0
        self.decoded = self.fec_recovered = self.concealed = self.resyncs = 0

    # ---- packets in -----------------------------------------------------------------

    def add(self, timestamp: int, payload: bytes, arrival_s: float) -> None:
        ext = self._extend(timestamp)
        if self._next is not None and abs(ext - self._next) > RESYNC_S * SAMPLE_RATE:
            self._resync(ext)
        if self._next is None:
            self._first = self._next = ext
        self._transits.append(arrival_s - ext / SAMPLE_RATE)
        self._update_timing()
        if ext < self._next:
            self.late += 1                     # its slot was already played or concealed
        elif ext in self._packets:
            self.duplicates += 1
        elif not payload:
            self.invalid += 1
        else:
            self.received += 1
            self._packets[ext] = payload
            if len(self._packets) > MAX_BUFFERED_PACKETS:
                self._resync(min(self._packets))

    def _extend(self, timestamp: int) -> int:
        """The 32-bit RTP timestamp unwrapped next to the newest one seen."""
        if self._last_ext is None:
            ext = timestamp
        else:
            delta = ((timestamp - self._last_ext + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            ext = self._last_ext + delta
        if self._last_ext is None or ext > self._last_ext:
            self._last_ext = ext
        return ext

    def _resync(self, ext: int) -> None:
        """The stream jumped (new source, sender restart): start over at ``ext``."""
        self.resyncs += 1
        self._packets = {t: p for t, p in self._packets.items() if abs(t - ext) <= RESYNC_S * SAMPLE_RATE}
        self._transits.clear()
        pts = self._pts_of_next()              # the output timeline carries on without a jump
        self._next = min([ext, *self._packets])
        self._first = self._next - pts

    def _pts_of_next(self) -> int:
        return 0 if self._first is None or self._next is None else self._next - self._first

    def _update_timing(self) -> None:
        ordered = sorted(self._transits)
        self._base_s = ordered[0]
        jitter_s = ordered[min(len(ordered) - 1, int(JITTER_QUANTILE * len(ordered)))] - ordered[0]
        delay_s = self._frame_samples / SAMPLE_RATE + jitter_s + MARGIN_S
        self._delay_s = min(MAX_DELAY_S, max(MIN_DELAY_S, delay_s))

    # ---- slots out ------------------------------------------------------------------

    @property
    def delay_s(self) -> float:
        """Current playout delay beyond the fastest packet's transit."""
        return self._delay_s

    def due_s(self) -> float | None:
        """When the next slot must be played; None until the first packet arrived."""
        if self._next is None:
            return None
        return self._next / SAMPLE_RATE + self._base_s + self._delay_s

    def next_is_buffered(self) -> bool:
        """True if the packet of the next slot is here (pop() will decode it as is)."""
        return self._next is not None and self._next in self._packets

    def pop(self) -> tuple[int, np.ndarray]:
        """Decode the next slot (call once ``due_s()`` has passed)."""
        if self._next is None:
            raise RuntimeError("opus playout: pop() before the first packet")
        pts = self._pts_of_next()
        samples = self._decode_slot(self._next)
        self._next += len(samples)
        for stale in [t for t in self._packets if t < self._next]:
            del self._packets[stale]           # overlapped by what was just played
            self.late += 1
        return pts, samples

    def _decode_slot(self, ext: int) -> np.ndarray:
        payload = self._packets.pop(ext, None)
        if payload is not None:
            try:
                samples = self._decoder.decode(payload)
                self._frame_samples = len(samples) or self._frame_samples
                self.decoded += 1
                return samples
            except OpusError:
                self.invalid += 1
        following = self._packets.get(ext + self._frame_samples)
        if following is not None:
            try:
                samples = self._decoder.decode_fec(following, self._frame_samples)
                self.fec_recovered += 1
                return samples
            except OpusError:
                self.invalid += 1
        self.concealed += 1
        return self._decoder.conceal(self._frame_samples)

    def status(self) -> dict[str, Any]:
        return {"received": self.received, "decoded": self.decoded,
                "fec_recovered": self.fec_recovered, "concealed": self.concealed,
                "late": self.late, "duplicates": self.duplicates, "invalid": self.invalid,
                "resyncs": self.resyncs, "delay_ms": round(1000 * self._delay_s, 1),
                "buffered": len(self._packets)}


class _PacketTap(JitterBuffer):
    """Stands in for aiortc's audio jitter buffer: hands every depayloaded packet on and
    never returns a frame, so aiortc's own Opus decoder stays idle."""

    def __init__(self, on_packet: Callable[[RtpPacket], None]) -> None:
        super().__init__(capacity=16)
        self._on_packet = on_packet

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self._on_packet(packet)
        return False, None


class AudioReceiver(MediaStreamTrack):
    """One remote Opus track through ``OpusPlayout``: an aiortc audio track of mono 48 kHz
    s16 frames (pts in samples, 1/48000), one per 20 ms slot, paced by the playout time.

    ``attach(receiver)`` before media flows (on the ``track`` event or right after the
    transceiver exists); then read ``recv()`` instead of ``receiver.track``. The track ends
    (MediaStreamError) when the aiortc receiver's own track ends (BYE, stop, hang-up).
    Decoding runs on the event loop: one 20 ms Opus frame is tens of microseconds of CPU,
    less than a hop to a thread would cost.
    """

    kind = "audio"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self.playout = OpusPlayout()
        self._remote: MediaStreamTrack | None = None
        self.stall_graces = 0

    def attach(self, receiver: RTCRtpReceiver) -> None:
        # Name-mangled attribute of aiortc's RTCRtpReceiver: the one seam for frame release.
        receiver._RTCRtpReceiver__jitter_buffer = _PacketTap(self._on_packet)
        self._remote = receiver.track

    def _on_packet(self, packet: RtpPacket) -> None:
        self.playout.add(packet.timestamp, packet.payload, self._clock())

    async def recv(self) -> av.AudioFrame:
        graced = False
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            due = self.playout.due_s()
            wait_s = IDLE_POLL_S if due is None else due - self._clock()
            if due is not None and wait_s <= 0:
                if -wait_s > STALL_S and not graced and not self.playout.next_is_buffered():
                    # After a stall (CPU, GC, a slow callback) the packets that arrived
                    # meanwhile still sit in the socket and aiortc's queues behind this
                    # wake-up; concealing now would count them late though they were not.
                    graced = True
                    self.stall_graces += 1
                    await self._wait(STALL_GRACE_S)
                    continue
                return self._frame(*self.playout.pop())
            await self._wait(wait_s)

    async def _wait(self, wait_s: float) -> None:
        """Sleep until the next slot is due, and end with the aiortc track (its recv() only
        ever returns the end of stream, since aiortc's decoder gets no frames)."""
        if self._remote is None:
            await asyncio.sleep(wait_s)
            return
        try:
            async with asyncio.timeout(wait_s):
                await self._remote.recv()
        except TimeoutError:
            return
        except MediaStreamError:
            self.stop()
            raise

    @staticmethod
    def _frame(pts: int, samples: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        frame.time_base = TIME_BASE
        return frame

    def status(self) -> dict[str, Any]:
        return {**self.playout.status(), "stall_graces": self.stall_graces}
