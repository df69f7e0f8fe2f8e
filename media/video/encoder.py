"""The running encoder: camera frames → chosen backend → every output.

Capture and encoding run on one dedicated thread (the backend is only ever touched by it):
it blocks in ``Camera.capture()``, which the camera paces, encodes, and hands the packets to
the event loop, which fans them out and makes the decisions. Backpressure: a slow encoder
simply captures less often (the camera or its driver drops frames, so latency does not
build), and at most MAX_IN_FLIGHT encoded frames wait for the loop.

Keyframes: a request (viewer PLI/FIR, a new output) makes the *next* frame an IDR, so it
leaves within one frame interval; requests closer together than ``keyframe_min_gap_s`` are
merged into one that is served when the gap has passed. Beyond a burst of
``FORCED_KEYFRAME_BURST`` (a call's start and a viewer joining right after), forced
keyframes take at most ``FORCED_KEYFRAME_SHARE`` of the target rate: on a congested link
every lost keyframe brings the viewers' next requests, and answering each at once turned
the stream all-intra (3 keyframes a second behind a 500 kbit/s uplink, 87 % of packets
lost).
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable

import av

from hal.camera import Camera
from hal.errors import UnsupportedControl

from media.video.chain import EncoderChoice
from media.video.config import Rung, VideoConfig
from media.video.outputs import EncodedOutput

log = logging.getLogger("roombox.media.video")

# Reopening a backend that cannot change its rate live costs a keyframe: only do it for a
# change bigger than this fraction.
REOPEN_BITRATE_CHANGE = 0.2
LOAD_EWMA_ALPHA = 0.1
MAX_IN_FLIGHT = 4
SELF_VIEW_WAIT_S = 2.0       # at the end of a call, for a keyframe still being decoded
THREAD_JOIN_TIMEOUT_S = 2.0
FORCED_KEYFRAME_SHARE = 0.5
FORCED_KEYFRAME_BURST = 2


def _finish(future: asyncio.Future, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class VideoEncoder:
    """Encodes the camera's frames with the chosen backend and fans packets out.

    Call from the event loop: ``add_output``, ``request_keyframe``, ``set_target_bitrate``,
    ``set_rung``; ``run()`` until cancelled (or the camera ends). Outputs get
    ``write(packet, keyframe)`` with pts in 1/90000 (the camera's clock).
    """

    def __init__(self, camera: Camera, config: VideoConfig, choice: EncoderChoice) -> None:
        self.camera = camera
        self.config = config
        self.choice = choice
        self.rungs: list[Rung] = config.rungs(camera.width, camera.height, camera.fps)
        if choice.packets is not None:
            # The camera's encoder runs at the camera's size and rate; hal cannot step it
            # (picamera2 would need the camera reconfigured), so the ladder has one rung and
            # congestion is met with the bitrate alone.
            self.rungs = self.rungs[:1]
        self.rung_index = 0
        self.target_bitrate_bps = config.bitrate_bps
        self.outputs: list[EncodedOutput] = []
        self._applied_bitrate_bps = 0
        self._opened_rung: Rung | None = None
        self._keyframe_reason: str | None = None
        self._last_forced_keyframe = float("-inf")
        self._forced_at: list[float] = []
        self.last_keyframe_bytes = 0
        self._next_pts = 0
        self._lock = threading.Lock()   # keyframe requests (loop) vs their consumer (thread)
        self._in_flight = 0
        # statistics
        self.frames_in = 0
        # Called on the encoder thread with every captured frame (the room screen's
        # self-view keeps a reference); each must return at once and never block.
        self.frame_listeners: list[Callable[[av.VideoFrame], None]] = []
        self.frames_encoded = 0
        self.frames_skipped = 0
        self.keyframes = 0
        self.forced_keyframes = 0
        self.bytes_out = 0
        self.encode_wall_s = 0.0  # x264's slice threads do most of the work: wall, not thread CPU
        self.load = 0.0          # encode wall time / frame interval, smoothed
        self.last_keyframe_reason = ""
        self._requested_at: float | None = None
        self._forced_pending_since: float | None = None
        self.last_keyframe_delay_s: float | None = None  # request → IDR handed to outputs
        # Which of a camera encoder's controls work (True), do not (False), are untried.
        self._camera_controls: dict[str, bool] = {}

    @property
    def rung(self) -> Rung:
        return self.rungs[self.rung_index]

    def add_output(self, output: EncodedOutput) -> None:
        """Fan packets out to ``output`` too; it asks for a keyframe when it starts."""
        output.on_keyframe_needed = self.request_keyframe
        self.outputs.append(output)
        if output.is_started:
            self.request_keyframe(f"{output.name} added")

    def remove_output(self, output: EncodedOutput) -> None:
        if output in self.outputs:
            self.outputs.remove(output)
            output.on_keyframe_needed = None

    def request_keyframe(self, reason: str) -> None:
        """Make an upcoming frame an IDR (the next one unless one was just forced)."""
        with self._lock:
            if self._keyframe_reason is None:
                self._keyframe_reason = reason
                self._requested_at = time.monotonic()
        self._forward_keyframe_request()   # a camera's encoder: ask it now, not at its next packet

    def set_target_bitrate(self, bitrate_bps: int) -> int:
        """Steer the encoder's rate (e.g. from REMB), clamped to the configured caps."""
        self.target_bitrate_bps = max(self.config.min_bitrate_bps,
                                      min(self.config.max_bitrate_bps, int(bitrate_bps)))
        return self.target_bitrate_bps

    def set_rung(self, index: int) -> None:
        """Switch to ladder step ``index`` (0 = best); the backend reopens at the next frame."""
        index = max(0, min(len(self.rungs) - 1, index))
        if index != self.rung_index:
            log.info("video: quality %s -> %s", self.rung, self.rungs[index])
            self.rung_index = index

    async def run(self) -> None:
        """Encode until the camera ends or the task is cancelled."""
        if self.choice.packets is not None:
            await self._run_camera_encoded()
            return
        loop = asyncio.get_running_loop()
        finished: asyncio.Future = loop.create_future()
        stop = threading.Event()
        thread = threading.Thread(target=self._capture_and_encode, args=(loop, stop, finished),
                                  name="video-encode", daemon=True)
        thread.start()
        try:
            await finished
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, THREAD_JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("video: encoder thread still blocked in capture after %.1f s",
                            THREAD_JOIN_TIMEOUT_S)
            else:
                self.choice.backend.close()
                self._opened_rung = None  # a later run() reopens the backend

    def _capture_and_encode(self, loop: asyncio.AbstractEventLoop, stop: threading.Event,
                            finished: asyncio.Future) -> None:
        """Encoder thread: blocking capture (paced by the camera) and encode in one place.

        Measured: handing each frame from a camera thread through the event loop to an
        executor cost ~0.3 ms of CPU per 720p frame more than this (three thread wake-ups
        and two loop wake-ups per frame instead of one). Packets still reach the outputs on
        the loop; at most MAX_IN_FLIGHT frames wait there, beyond that frames are skipped.
        """
        error: BaseException | None = None
        try:
            while not stop.is_set():
                frame = self.camera.capture()
                if frame is None:
                    break
                self.frames_in += 1
                for listener in self.frame_listeners:
                    listener(frame)
                if not self._due(frame) or self._in_flight >= MAX_IN_FLIGHT:
                    self.frames_skipped += 1
                    continue
                keyframe = self._take_keyframe_request()
                packets, wall_s = self._encode(frame, keyframe, self.rung, self.target_bitrate_bps)
                with self._lock:
                    self._in_flight += 1
                loop.call_soon_threadsafe(self._deliver, packets, wall_s)
        except BaseException as exc:  # handed to run(), which raises it on the loop
            error = exc
        if not loop.is_closed():
            loop.call_soon_threadsafe(_finish, finished, error)

    def _deliver(self, packets: list[av.Packet], wall_s: float) -> None:
        with self._lock:
            self._in_flight -= 1
        self._account(wall_s)
        self._fan_out(packets)

    async def _run_camera_encoded(self) -> None:
        """The camera encodes (UVC H.264, picamera2's hardware encoder): packets pass through;
        keyframe requests and the target bitrate go to the camera's encoder where hal can
        steer it (a UVC camera's own GOP then bounds a viewer's wait)."""
        self._applied_bitrate_bps = self.config.bitrate_bps   # what the probe started it with
        self._camera_bitrate_tried: int | None = None
        first = self.choice.first_packet
        if first is not None:
            self.choice.first_packet = None
            self.frames_in += 1
            self._fan_out([first])
        packets = self.choice.packets
        self_view: asyncio.Future | None = None
        try:
            async for packet in packets:
                self.frames_in += 1
                self.frames_encoded += 1
                self._fan_out([packet])
                if self.frame_listeners and packet.is_keyframe and (self_view is None or self_view.done()):
                    # No raw frames on this path: the self-view shows each keyframe, decoded on
                    # a worker thread (one at a time; packets never wait for it).
                    self_view = asyncio.get_running_loop().run_in_executor(
                        None, self._show_keyframe, bytes(packet))
                self._forward_keyframe_request()      # one deferred by the minimum gap
                target = self.target_bitrate_bps
                if target not in (self._applied_bitrate_bps, self._camera_bitrate_tried):
                    self._camera_bitrate_tried = target   # a refused rate is not retried per frame
                    await self._forward_bitrate(target)
        finally:
            await packets.aclose()   # stops the camera's encoder
            if self_view is not None:
                await asyncio.wait([self_view], timeout=SELF_VIEW_WAIT_S)

    def _show_keyframe(self, data: bytes) -> None:
        """Decode one keyframe (it carries SPS/PPS) and hand the picture to the listeners."""
        try:
            decoder = av.CodecContext.create("h264", "r")
            decoder.flags |= av.codec.context.Flags.low_delay
            frames = decoder.decode(av.Packet(data)) or decoder.decode(None)
        except av.FFmpegError as exc:
            log.debug("video: self-view keyframe not decodable (%s)", exc)
            return
        for frame in frames[-1:]:
            for listener in self.frame_listeners:
                listener(frame)

    def _forward_keyframe_request(self) -> None:
        if self.choice.packets is None or self._camera_controls.get("keyframe") is False:
            return
        if not self._take_keyframe_request():
            return
        try:
            self.camera.request_keyframe()
            self._camera_controls["keyframe"] = True
        except UnsupportedControl as exc:
            self._camera_controls["keyframe"] = False
            log.warning("video: %s; viewers wait for the camera's own next keyframe", exc)

    async def _forward_bitrate(self, bitrate_bps: int) -> None:
        if self._camera_controls.get("bitrate") is False:
            return
        big = abs(bitrate_bps - self._applied_bitrate_bps) > REOPEN_BITRATE_CHANGE * self._applied_bitrate_bps
        try:
            # Blocking: a restart waits for the encoder's thread. Packets stop meanwhile
            # anyway, so awaiting it here holds nothing else up.
            applied = await asyncio.to_thread(self.camera.set_bitrate, bitrate_bps, big)
            self._camera_controls["bitrate"] = True
        except UnsupportedControl as exc:
            self._camera_controls["bitrate"] = False
            log.warning("video: %s; the camera keeps its own rate", exc)
            return
        if applied:
            self._applied_bitrate_bps = bitrate_bps

    def _due(self, frame: av.VideoFrame) -> bool:
        """Frame-rate decimation for rungs below the camera's rate, by pts."""
        if self.rung.fps >= self.camera.fps:
            return True
        if frame.pts is None or frame.pts >= self._next_pts:
            step = 90000 // self.rung.fps
            # Half a frame of slack absorbs capture jitter without dropping the wrong frame.
            self._next_pts = (frame.pts or 0) + step - 90000 // (2 * self.camera.fps)
            return True
        return False

    def _take_keyframe_request(self) -> bool:
        """Encoder thread: consume a pending request unless the last forced IDR is too recent."""
        with self._lock:
            if self._keyframe_reason is None:
                return False
            now = time.monotonic()
            if now - self._last_forced_keyframe < self.config.keyframe_min_gap_s:
                return False
            window = FORCED_KEYFRAME_BURST * self.keyframe_cost_s()
            self._forced_at = [t for t in self._forced_at if now - t < window]
            if len(self._forced_at) >= FORCED_KEYFRAME_BURST:
                return False
            self._forced_at.append(now)
            self._last_forced_keyframe = now
            self.last_keyframe_reason = self._keyframe_reason
            self._forced_pending_since = self._requested_at
            self._keyframe_reason = None
            self.forced_keyframes += 1
            return True

    def keyframe_cost_s(self) -> float:
        """How long ``FORCED_KEYFRAME_SHARE`` of the target rate takes to pay for one keyframe
        the size of the last: past the burst, the least spacing of forced keyframes."""
        return self.last_keyframe_bytes * 8 / (FORCED_KEYFRAME_SHARE * max(1, self.target_bitrate_bps))

    def _encode(self, frame: av.VideoFrame, keyframe: bool, rung: Rung,
                bitrate_bps: int) -> tuple[list[av.Packet], float]:
        """Encoder thread: (re)open if needed, scale if the rung is smaller, encode."""
        started = time.perf_counter()
        backend = self.choice.backend
        if rung != self._opened_rung:
            gop = max(1, round(self.config.keyframe_interval_s * rung.fps))
            backend.open(rung, bitrate_bps, self.config.max_bitrate_bps, gop)
            self._opened_rung, self._applied_bitrate_bps = rung, bitrate_bps
        elif bitrate_bps != self._applied_bitrate_bps:
            if backend.set_bitrate(bitrate_bps):
                self._applied_bitrate_bps = bitrate_bps
            elif abs(bitrate_bps - self._applied_bitrate_bps) > REOPEN_BITRATE_CHANGE * self._applied_bitrate_bps:
                self._opened_rung = None
                return self._encode(frame, keyframe, rung, bitrate_bps)
        if (frame.width, frame.height) != (rung.width, rung.height):
            # The one copy on this path that is not the encoder's own: swscale to the rung.
            scaled = frame.reformat(width=rung.width, height=rung.height, format="yuv420p")
            scaled.pts, scaled.time_base = frame.pts, frame.time_base
            frame = scaled
        packets = backend.encode(frame, keyframe)
        return packets, time.perf_counter() - started

    def _account(self, wall_s: float) -> None:
        self.frames_encoded += 1
        self.encode_wall_s += wall_s
        self.load += LOAD_EWMA_ALPHA * (wall_s * self.rung.fps - self.load)

    def _fan_out(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            keyframe = bool(packet.is_keyframe)
            self.keyframes += keyframe
            if keyframe:
                self.last_keyframe_bytes = packet.size
            if keyframe and self._forced_pending_since is not None:
                self.last_keyframe_delay_s = time.monotonic() - self._forced_pending_since
                self._forced_pending_since = None
            self.bytes_out += packet.size
            for output in list(self.outputs):
                output.write(packet, keyframe)

    def status(self) -> dict[str, Any]:
        status = self.choice.status()
        status.update(
            quality=str(self.rung), target_bitrate_bps=self.target_bitrate_bps,
            frames_in=self.frames_in, frames_encoded=self.frames_encoded,
            frames_skipped=self.frames_skipped, keyframes=self.keyframes,
            forced_keyframes=self.forced_keyframes, last_keyframe_reason=self.last_keyframe_reason,
            last_keyframe_bytes=self.last_keyframe_bytes, keyframe_cost_s=round(self.keyframe_cost_s(), 2),
            load=round(self.load, 3),
            encode_ms_per_frame=round(1000 * self.encode_wall_s / max(1, self.frames_encoded), 2),
            outputs={o.name: o.status() for o in self.outputs})
        if self.choice.packets is not None:
            status["camera_controls"] = dict(self._camera_controls)
            status["applied_bitrate_bps"] = self._applied_bitrate_bps
            if "encoder" in (camera := self.camera.status()):   # picamera2: restarts, drops
                status["camera_encoder"] = camera["encoder"]
        return status
