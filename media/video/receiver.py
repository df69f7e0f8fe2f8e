"""Receiving a remote participant's H.264: frames leave the jitter buffer on the RTP marker
bit and are decoded on our own thread.

aiortc's video jitter buffer releases a frame only when the first packet of the *next*
frame arrives: a whole frame interval of latency (measured: p50 41-43 ms → 8-10 ms with
marker release). ``MarkerJitterBuffer`` replaces it in one RTCRtpReceiver (an instance
attribute; aiortc's NACK generation, RTX unwrapping and RTCP reports stay as they are) and
releases a frame as soon as every packet from its first to its marker-bit packet is there,
whatever order they came in. A gap that NACK does not fill within ``GAP_PATIENCE_FRAMES``
complete frames is given up: frames are dropped until the next keyframe, and a PLI asks
the sender for one (rate-limited). The same happens when the decoder reports a broken picture.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Any, Callable

import av
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from media.video.decoder import VideoDecoder, decoder_status, open_decoder

log = logging.getLogger("roombox.media.video")

GAP_PATIENCE_FRAMES = 3      # ~100 ms at 30 fps: time for a NACK round trip on a LAN
PLI_MIN_GAP_S = 0.3
MAX_BUFFERED_PACKETS = 1024
STARTUP_REORDER_PACKETS = 64
DECODE_QUEUE_FRAMES = 4
OUTPUT_QUEUE_FRAMES = 2
THREAD_JOIN_TIMEOUT_S = 2.0


def _seq_delta(a: int, b: int) -> int:
    """a - b in RTP sequence space (-32768..32767)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def is_h264_keyframe(annexb: bytes) -> bool:
    """True if the access unit holds an IDR slice or an SPS (NAL types 5, 7)."""
    start = annexb.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(annexb):
        if annexb[start + 3] & 0x1F in (5, 7):
            return True
        start = annexb.find(b"\x00\x00\x01", start + 3)
    return False


class MarkerJitterBuffer(JitterBuffer):
    """Reassembles frames from depayloaded RTP packets and hands each complete one to
    ``on_frame(data, rtp_timestamp, is_keyframe)`` at once. Its ``add()`` keeps aiortc's
    contract — ``(pli_wanted, None)`` — and never returns a frame, so aiortc's own decoder
    stays idle. Runs on the event loop."""

    def __init__(self, on_frame: Callable[[bytes, int, bool], None]) -> None:
        super().__init__(capacity=MAX_BUFFERED_PACKETS, is_video=True)
        self._on_frame = on_frame
        self._packets: dict[int, RtpPacket] = {}
        self._next_seq: int | None = None
        self._held_markers = 0
        self.needs_keyframe = True
        self._last_pli = float("-inf")
        # No PLI up front: a sender starts with a keyframe anyway; joining mid-stream, the
        # first dropped non-keyframe asks for one.
        self._pli_wanted = False
        self.frames_released = 0
        self.keyframes_released = 0
        self.frames_dropped = 0
        self.gaps_given_up = 0
        self.late_packets = 0

    def request_keyframe(self) -> None:
        """Drop frames until a keyframe and ask the sender for one (e.g. decoder error)."""
        self.needs_keyframe = True
        self._pli_wanted = True

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        if self._next_seq is None:
            self._next_seq = packet.sequence_number
        delta = _seq_delta(packet.sequence_number, self._next_seq)
        if delta < 0 and self._nothing_released() and delta > -STARTUP_REORDER_PACKETS:
            # Before the first frame, the first packet seen need not be the earliest one.
            self._next_seq, delta = packet.sequence_number, 0
        if delta < 0:
            self.late_packets += 1       # already released or given up
        elif packet.sequence_number not in self._packets:   # a retransmission may repeat one
            self._packets[packet.sequence_number] = packet
            self._held_markers += packet.marker
            self._release()
            if len(self._packets) > MAX_BUFFERED_PACKETS:
                self._skip_gap()
        return self._take_pli(), None

    def _nothing_released(self) -> bool:
        return self.frames_released == 0 and self.frames_dropped == 0 and self.gaps_given_up == 0

    def _release(self) -> None:
        while True:
            frame = self._complete_frame_at(self._next_seq)
            if frame is None:
                if self._later_frames_complete() >= GAP_PATIENCE_FRAMES:
                    self._skip_gap()
                    continue
                return
            packets, end_seq = frame
            for seq in range(len(packets)):
                self._drop((self._next_seq + seq) & 0xFFFF)
            self._next_seq = (end_seq + 1) & 0xFFFF
            self._emit(packets)

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

    def _later_frames_complete(self) -> int:
        # The frame at _next_seq is incomplete, so every marker held ends a later frame.
        return self._held_markers

    def _drop(self, seq: int) -> None:
        packet = self._packets.pop(seq, None)
        if packet is not None:
            self._held_markers -= packet.marker

    def _skip_gap(self) -> None:
        """Give up on the missing packet(s): resume at the first frame that starts after a
        marker we hold, and wait for a keyframe (the references are now broken)."""
        self.gaps_given_up += 1
        ordered = sorted(self._packets, key=lambda s: _seq_delta(s, self._next_seq))
        for seq in ordered:
            if self._packets[seq].marker and (seq + 1) & 0xFFFF in self._packets:
                resume = (seq + 1) & 0xFFFF
                break
        else:
            resume = (ordered[-1] + 1) & 0xFFFF if ordered else self._next_seq
        for seq in ordered:
            if _seq_delta(seq, resume) < 0:
                self._drop(seq)
        self._next_seq = resume
        self.request_keyframe()

    def _emit(self, packets: list[RtpPacket]) -> None:
        data = b"".join(p._data for p in packets)
        keyframe = is_h264_keyframe(data)
        if self.needs_keyframe and not keyframe:
            self.frames_dropped += 1
            self._pli_wanted = True
            return
        self.needs_keyframe = False
        self.frames_released += 1
        self.keyframes_released += keyframe
        self._on_frame(data, packets[0].timestamp, keyframe)

    def _take_pli(self) -> bool:
        if not self._pli_wanted:
            return False
        now = time.monotonic()
        if now - self._last_pli < PLI_MIN_GAP_S:
            return False
        self._last_pli = now
        self._pli_wanted = False
        return True

    def status(self) -> dict[str, Any]:
        return {"released": self.frames_released, "keyframes": self.keyframes_released,
                "dropped": self.frames_dropped,
                "gaps_given_up": self.gaps_given_up, "late_packets": self.late_packets}


class VideoReceiver:
    """Decodes one remote H.264 track with marker-bit release; an async context manager.

    ``attach(receiver)`` as soon as the transceiver exists (before media flows: on the
    ``track`` event, or right after ``addTransceiver``). ``recv()`` returns decoded
    ``av.VideoFrame``s with pts = RTP timestamp (1/90000); when the consumer is slow the
    oldest frame is dropped. Decoding runs on the receiver's own thread.
    """

    def __init__(self, decoder_order: tuple[str, ...] | None = None) -> None:
        self._decoder_order = decoder_order
        self.buffer = MarkerJitterBuffer(self._on_frame)
        self._decoder: VideoDecoder | None = None
        self._rejected: dict[str, str] = {}
        self._in: queue.Queue = queue.Queue(DECODE_QUEUE_FRAMES)
        self._out: asyncio.Queue = asyncio.Queue(OUTPUT_QUEUE_FRAMES)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.frames_decoded = 0
        self.decode_errors = 0
        self.frames_dropped_slow = 0

    def attach(self, receiver: RTCRtpReceiver) -> None:
        # Name-mangled attribute of aiortc's RTCRtpReceiver: the one seam for frame release.
        receiver._RTCRtpReceiver__jitter_buffer = self.buffer

    async def __aenter__(self) -> "VideoReceiver":
        self._loop = asyncio.get_running_loop()
        order = self._decoder_order
        self._decoder, self._rejected = await asyncio.to_thread(
            open_decoder, *(() if order is None else (order,)))
        self._thread = threading.Thread(target=self._decode_loop, name="video-decode", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self._thread is not None:
            self._put_in(None)
            await asyncio.to_thread(self._thread.join, THREAD_JOIN_TIMEOUT_S)
            self._thread = None

    async def recv(self) -> av.VideoFrame:
        """The next decoded frame (the newest ones if we fell behind)."""
        return await self._out.get()

    def _on_frame(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        if self._thread is not None:
            self._put_in((data, timestamp))

    def _put_in(self, item: Any) -> None:
        if self._in.full():
            # The decoder is behind: dropping an encoded frame breaks references, so start
            # over at a keyframe rather than decode garbage.
            with contextlib.suppress(queue.Empty):
                while True:
                    self._in.get_nowait()
            self.frames_dropped_slow += 1
            self.buffer.request_keyframe()
            if item is not None:
                return
        self._in.put_nowait(item)

    def _decode_loop(self) -> None:
        while (item := self._in.get()) is not None:
            data, timestamp = item
            try:
                frames = self._decoder.decode(data, timestamp)
            except av.FFmpegError as exc:
                self.decode_errors += 1
                log.info("video: decode error (%s); asking for a keyframe", exc)
                self._loop.call_soon_threadsafe(self.buffer.request_keyframe)
                continue
            for frame in frames:
                self.frames_decoded += 1
                self._loop.call_soon_threadsafe(self._deliver, frame)

    def _deliver(self, frame: av.VideoFrame) -> None:
        if self._out.full():
            self._out.get_nowait()
            self.frames_dropped_slow += 1
        self._out.put_nowait(frame)

    def status(self) -> dict[str, Any]:
        status = decoder_status(self._decoder, self._rejected) if self._decoder else {}
        status.update(self.buffer.status(), decoded=self.frames_decoded,
                      decode_errors=self.decode_errors, dropped_slow=self.frames_dropped_slow)
        return status
