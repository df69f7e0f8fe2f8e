"""Receiving a remote participant's H.264: frames leave our jitter buffer (jitterbuffer.py:
marker-bit release, timed NACKs, a latency budget) and are decoded on our own thread.

``MarkerJitterBuffer`` replaces aiortc's in one RTCRtpReceiver (an instance attribute; RTX
unwrapping and RTCP reports stay aiortc's), and aiortc's NackGenerator is switched off for
that receiver: the buffer NACKs on its own timer, driven by ``VideoReceiver``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

from media.net import tolerate_loss_on
from media.video.decoder import VideoDecoder, decoder_status, open_decoder
from media.video.jitterbuffer import (LATENCY_BUDGET_S, MarkerJitterBuffer,  # noqa: F401
                                      is_h264_keyframe)

log = logging.getLogger("roombox.media.video")

# Room for the burst a repaired gap releases and for a decoder starved of CPU for a while:
# overflowing means dropping a frame, which breaks references and costs a keyframe.
DECODE_QUEUE_FRAMES = 30
OUTPUT_QUEUE_FRAMES = 2
THREAD_JOIN_TIMEOUT_S = 2.0
# How often deadlines and NACK retries are checked when no packet arrives to trigger it.
POLL_INTERVAL_S = 0.01
# REMB at most this often unless the estimate fell by more than REMB_DROP (libwebrtc's
# throttle: 200 ms, 3 %). aiortc's estimator returns a REMB for every packet while its
# delay detector says "overusing", and each one is a sendto(): measured in a 4-party call,
# the box spent a third of its event loop sending REMBs and fell behind on audio and video.
REMB_MIN_GAP_S = 0.2
REMB_DROP = 0.97


class VideoReceiver:
    """Decodes one remote H.264 track with marker-bit release; an async context manager.

    ``attach(receiver)`` as soon as the transceiver exists (before media flows: on the
    ``track`` event, or right after ``addTransceiver``). ``recv()`` returns decoded
    ``av.VideoFrame``s with pts = RTP timestamp (1/90000); when the consumer is slow the
    oldest frame is dropped. Decoding runs on the receiver's own thread.
    """

    def __init__(self, decoder_order: tuple[str, ...] | None = None,
                 budget_s: float = LATENCY_BUDGET_S) -> None:
        self._decoder_order = decoder_order
        self.buffer = MarkerJitterBuffer(self._on_frame, budget_s)
        self._receiver: RTCRtpReceiver | None = None
        self._timer: asyncio.Task | None = None
        self._decoder: VideoDecoder | None = None
        self._rejected: dict[str, str] = {}
        self._in: queue.Queue = queue.Queue(DECODE_QUEUE_FRAMES)
        self._out: asyncio.Queue = asyncio.Queue(OUTPUT_QUEUE_FRAMES)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.frames_decoded = 0
        self.decode_errors = 0
        self.frames_dropped_slow = 0
        self.rembs_sent = 0
        self.rembs_held_back = 0
        self._last_remb: tuple[float, int] | None = None     # (when, bitrate)
        self.clock = time.monotonic

    def attach(self, receiver: RTCRtpReceiver) -> None:
        # Name-mangled attribute of aiortc's RTCRtpReceiver: the one seam for frame release.
        receiver._RTCRtpReceiver__jitter_buffer = self.buffer
        # Ours NACKs on a timer until the frame's deadline; aiortc's would NACK each gap
        # once more, on top.
        receiver._RTCRtpReceiver__nack_generator = None
        self._receiver = receiver
        self._throttle_remb(receiver)
        # aioice would close the call after ~30 s of heavy loss (media/net/consent.py).
        tolerate_loss_on(receiver.transport)

    def _throttle_remb(self, receiver: RTCRtpReceiver) -> None:
        send_rtcp = receiver._send_rtcp

        async def send(packet) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP and not self._remb_due(packet):
                self.rembs_held_back += 1
                return
            await send_rtcp(packet)

        # An instance attribute: aiortc's own method stays as it is for every other receiver.
        receiver._send_rtcp = send

    def _remb_due(self, packet: RtcpPsfbPacket) -> bool:
        try:
            bitrate, _ = unpack_remb_fci(packet.fci)
        except ValueError:
            return True                      # another APP message: not ours to hold
        now = self.clock()
        if self._last_remb is not None:
            when, last = self._last_remb
            if now - when < REMB_MIN_GAP_S and bitrate > REMB_DROP * last:
                return False
        self._last_remb = (now, bitrate)
        self.rembs_sent += 1
        return True

    async def __aenter__(self) -> "VideoReceiver":
        self._loop = asyncio.get_running_loop()
        order = self._decoder_order
        self._decoder, self._rejected = await asyncio.to_thread(
            open_decoder, *(() if order is None else (order,)))
        self._thread = threading.Thread(target=self._decode_loop, name="video-decode", daemon=True)
        self._thread.start()
        self._timer = asyncio.create_task(self._poll_loop(), name="video-jitter-timer")
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._thread is not None:
            self._put_in(None)
            await asyncio.to_thread(self._thread.join, THREAD_JOIN_TIMEOUT_S)
            self._thread = None

    async def _poll_loop(self) -> None:
        """The buffer's clock: deadlines without new packets, NACK retries, PLIs. Owned by
        this context manager (cancelled and awaited on exit)."""
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            nacks, pli = self.buffer.poll()
            receiver, ssrc = self._receiver, self.buffer.ssrc
            if receiver is None or ssrc is None:
                continue
            try:
                if nacks:
                    await receiver._send_rtcp_nack(ssrc, sorted(nacks))
                if pli:
                    await receiver._send_rtcp_pli(ssrc)
            except ConnectionError:
                pass   # transport closing: the session ends this receiver soon

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
                      decode_errors=self.decode_errors, dropped_slow=self.frames_dropped_slow,
                      rembs_sent=self.rembs_sent, rembs_held_back=self.rembs_held_back)
        return status
