"""CSI cameras (Camera Module 2/3, HQ) through picamera2, imported only when chosen.

Two ways out: ``frames()`` copies each YUV420 buffer into an ``av.VideoFrame`` for our
encoders; ``packets()`` runs picamera2's own hardware H.264 encoder (Pi 4 and earlier: the
VideoCore's encoder behind /dev/video11), which takes the ISP's DMA buffers directly, so no
frame is copied in our process. The Pi 5 has no hardware encoder: there picamera2's
``H264Encoder`` is libav software, and ``packets()`` refuses so the chain picks our own.

On Raspberry Pi OS picamera2 comes from apt (python3-picamera2); the venv must be created
with --system-site-packages to see it (README, Raspberry Pi section).
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import threading
from typing import Any, AsyncIterator

import av

from hal.camera import TIME_BASE, Camera
from hal.errors import DeviceUnavailable, UnsupportedControl
from hal.profile import CameraProfile

log = logging.getLogger("roombox.hal")

BUFFERS = 4
# libcamera pads each line of a YUV420 buffer to 64 bytes; with such widths there is no
# padding, so the buffer maps onto a yuv420p frame without a repacking copy.
WIDTH_ALIGN = 64
# Encoded frames waiting for the event loop. Beyond this the loop is stalled: drop, and
# restart the decoders' chain with a keyframe rather than queue seconds of video.
MAX_PACKET_QUEUE = 8
# Every browser decodes constrained baseline (WebRTC's profile-level-id 42e0xx).
H264_PROFILE = "constrained baseline"


class Picamera2Camera(Camera):
    def __init__(self, profile: CameraProfile) -> None:
        super().__init__(profile)
        try:
            from picamera2 import Picamera2
            from picamera2.outputs import Output
        except ImportError as exc:
            raise DeviceUnavailable(
                f"picamera2: not installed ({exc.name or exc}); on Raspberry Pi OS install python3-picamera2 "
                "and create the venv with --system-site-packages, elsewhere pip install 'roombox[pi]'") from None
        if self.width % WIDTH_ALIGN:
            raise DeviceUnavailable(f"picamera2: camera.width must be a multiple of {WIDTH_ALIGN}, got {self.width}")
        index = int(profile.device or 0)
        cameras = Picamera2.global_camera_info()
        if index >= len(cameras):
            raise DeviceUnavailable(f"picamera2: no camera {index} (found {len(cameras)}; check the ribbon cable "
                                    "and camera_auto_detect in config.txt)")
        try:
            self._camera = Picamera2(index)
            config = self._camera.create_video_configuration(
                main={"size": (self.width, self.height), "format": "YUV420"},
                controls={"FrameRate": float(self.fps)}, buffer_count=BUFFERS)
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:  # libcamera raises RuntimeError/OSError variants for busy/absent
            raise DeviceUnavailable(f"picamera2: cannot start camera {index} at {self.width}x{self.height} "
                                    f"({type(exc).__name__}: {exc})") from None
        self.model = cameras[index].get("Model", "unknown")
        self._output_class = _packet_output_class(Output)
        self._encoder: Any = None        # picamera2's H264Encoder while packets() runs
        self._output: Any = None
        self._bridge: _PacketBridge | None = None
        self._encoder_lock = threading.Lock()   # start/stop/restart vs each other
        self.encoder_restarts = 0
        self.live_bitrate_changes = 0
        self._live_bitrate: bool | None = None   # whether the driver takes VIDEO_BITRATE live

    def _capture(self) -> av.VideoFrame:
        try:
            image = self._camera.capture_array("main")
        except Exception as exc:
            raise DeviceUnavailable(f"picamera2: capture failed ({type(exc).__name__}: {exc})") from None
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = self._pts_now()
        frame.time_base = TIME_BASE
        return frame

    # ---- the hardware encoder ----------------------------------------------------------

    async def packets(self, bitrate_bps: int | None = None,
                      gop_frames: int | None = None) -> AsyncIterator[av.Packet]:
        """H.264 from picamera2's ``H264Encoder``: Annex B, SPS/PPS repeated before every
        IDR (``repeat=True``) so a viewer can start at any keyframe, IDR every
        ``gop_frames`` (``iperiod``). One stream at a time; the encoder stops when the
        iterator is closed."""
        self._check_open()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[av.Packet | Exception | None] = asyncio.Queue()
        bridge = _PacketBridge(self, loop, queue)
        await asyncio.to_thread(self._start_encoder, bridge, bitrate_bps, gop_frames)
        try:
            while True:
                item = await queue.get()
                if item is None:             # the camera was closed
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            await asyncio.to_thread(self._stop_encoder, bridge)

    def _start_encoder(self, bridge: "_PacketBridge", bitrate_bps: int | None,
                       gop_frames: int | None) -> None:
        from picamera2.encoders import H264Encoder
        from picamera2.platform import Platform, get_platform
        if get_platform() != Platform.VC4:
            # picamera2 would hand us its libav *software* H264Encoder here (Pi 5/PiSP).
            raise UnsupportedControl("picamera2: this Pi has no hardware H.264 encoder (Pi 5); "
                                     "frames go to the next encoder in the chain")
        with self._encoder_lock:
            if self._encoder is not None:  # an earlier packets() iterator nobody closed
                self._stop_encoder_locked()
            encoder = H264Encoder(bitrate=bitrate_bps, repeat=True, iperiod=gop_frames,
                                  profile=H264_PROFILE)
            output = self._output_class(bridge)
            try:
                self._camera.start_encoder(encoder, output)
            except Exception as exc:  # opening /dev/video11 or its ioctls: OSError/RuntimeError
                raise DeviceUnavailable(f"picamera2: hardware H.264 encoder would not start "
                                        f"({type(exc).__name__}: {exc})") from None
            self._encoder, self._output, self._bridge = encoder, output, bridge
        log.info("picamera2: hardware H.264 encoder started (%s bit/s, IDR every %s frames)",
                 encoder.bitrate, gop_frames or "encoder default")

    def _stop_encoder(self, bridge: "_PacketBridge") -> None:
        with self._encoder_lock:
            if self._bridge is bridge:
                self._stop_encoder_locked()

    def _stop_encoder_locked(self) -> None:
        encoder, bridge = self._encoder, self._bridge
        self._encoder, self._output, self._bridge = None, None, None
        bridge.end()
        try:
            self._camera.stop_encoder(encoder)
        except Exception as exc:  # the camera may already be gone; nothing left to release
            log.warning("picamera2: stopping the encoder failed (%s: %s)", type(exc).__name__, exc)

    def request_keyframe(self) -> None:
        """``H264Encoder.force_key_frame()``: picamera2 sets V4L2's FORCE_KEY_FRAME before
        it queues the next camera buffer, so the IDR is the next frame encoded."""
        encoder = self._encoder
        if encoder is not None:  # not running: the encoder's first frame is an IDR anyway
            encoder.force_key_frame()

    def set_bitrate(self, bitrate_bps: int, restart: bool = False) -> bool:
        """Live where the driver allows it: V4L2's VIDEO_BITRATE control on the encoder's own
        device, as picamera2 sets it at start (bcm2835-codec applies it to the running
        stream). Otherwise, with ``restart``, stop and start the encoder at the new rate."""
        with self._encoder_lock:
            encoder = self._encoder
            if encoder is None:
                raise UnsupportedControl("picamera2: no encoder running (packets() is not being read)")
            if self._live_bitrate is not False and _set_v4l2_bitrate(encoder, bitrate_bps):
                self._live_bitrate = True
                encoder.bitrate = bitrate_bps
                self.live_bitrate_changes += 1
                return True
            self._live_bitrate = False       # refused once: the driver will not change its mind
            if not restart:
                return False
            output = self._output
            self._camera.stop_encoder(encoder)
            encoder.bitrate = bitrate_bps   # H264Encoder keeps an explicit bitrate on start
            self._bridge.restarted()
            try:
                self._camera.start_encoder(encoder, output)
            except Exception as exc:
                error = DeviceUnavailable(f"picamera2: encoder would not restart at {bitrate_bps} bit/s "
                                          f"({type(exc).__name__}: {exc})")
                self._bridge.end(error)      # packets() raises it: the stream is over
                self._encoder = self._output = self._bridge = None
                raise error from None
            self.encoder_restarts += 1
            return True

    def _close(self) -> None:
        with self._encoder_lock:
            if self._encoder is not None:
                self._stop_encoder_locked()
        self._camera.stop()
        self._camera.close()

    def status(self):
        status = super().status()
        status["model"] = self.model
        encoder, bridge = self._encoder, self._bridge
        if encoder is not None and bridge is not None:
            status["encoder"] = {"bitrate_bps": encoder.bitrate, "packets": bridge.packets,
                                 "dropped": bridge.dropped, "restarts": self.encoder_restarts,
                                 "live_bitrate_changes": self.live_bitrate_changes}
        return status


def _set_v4l2_bitrate(encoder: Any, bitrate_bps: int) -> bool:
    """The same ioctl picamera2's V4L2Encoder._start issues, on its open device; False where
    that is not possible (no device, or a driver that refuses changes while streaming)."""
    device = getattr(encoder, "vd", None)
    if device is None or getattr(device, "closed", True):
        return False
    try:
        import videodev2  # picamera2's own dependency (v4l2-python3)
        control = videodev2.v4l2_control()
        control.id = videodev2.V4L2_CID_MPEG_VIDEO_BITRATE
        control.value = int(bitrate_bps)
        fcntl.ioctl(device, videodev2.VIDIOC_S_CTRL, control)
    except (ImportError, OSError, ValueError) as exc:
        log.info("picamera2: live bitrate change refused (%s); restarting the encoder instead", exc)
        return False
    return True


class _PacketBridge:
    """From picamera2's encoder thread to the event loop: bytes → ``av.Packet`` with pts on
    the camera's 90 kHz clock, queued for ``packets()``.

    picamera2's timestamps are microseconds since the encoder's first frame (from the
    sensor timestamp) and restart at 0 when the encoder restarts; each start is anchored to
    the camera's clock at its first frame, so pts keep rising across restarts.
    """

    def __init__(self, camera: Picamera2Camera, loop: asyncio.AbstractEventLoop,
                 queue: asyncio.Queue) -> None:
        self._camera = camera
        self._loop = loop
        self._queue = queue
        self._base_pts: int | None = None
        self._last_pts = -1
        self._waiting_for_keyframe = True
        self.packets = 0
        self.dropped = 0

    def restarted(self) -> None:
        self._base_pts = None

    def end(self, error: Exception | None = None) -> None:
        """Any thread: finish ``packets()`` (None) or make it raise ``error``."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, error)
        except RuntimeError:  # the loop is closed already
            pass

    def put(self, data: bytes, keyframe: bool, timestamp_us: int | None) -> None:
        """Encoder thread: one encoded frame (a copy of the compressed bytes only)."""
        offset = round((timestamp_us or 0) * 9 / 100)     # µs → 1/90000 s
        if self._base_pts is None:
            self._base_pts = self._camera._pts_now() - offset
        pts = max(self._base_pts + offset, self._last_pts + 1)
        self._last_pts = pts
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = keyframe
        try:
            self._loop.call_soon_threadsafe(self._enqueue, packet)
        except RuntimeError:  # the loop is closed: nobody reads packets() any more
            pass

    def _enqueue(self, packet: av.Packet) -> None:
        if self._waiting_for_keyframe and not packet.is_keyframe:
            self.dropped += 1
            return
        if self._queue.qsize() >= MAX_PACKET_QUEUE:
            # Dropping a frame breaks every later one until the next IDR: ask for it now.
            self.dropped += 1
            self._waiting_for_keyframe = True
            self._camera.request_keyframe()
            return
        self._waiting_for_keyframe = False
        self.packets += 1
        self._queue.put_nowait(packet)


def _packet_output_class(output_base: type) -> type:
    """A subclass of picamera2's ``Output`` (its encoders accept nothing else) that passes
    each encoded frame to a _PacketBridge."""

    class PacketOutput(output_base):
        def __init__(self, bridge: _PacketBridge) -> None:
            super().__init__()
            self.bridge = bridge

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            # picamera2 calls this on its encoder thread; audio never comes from H264Encoder.
            if audio or frame is None:
                return
            self.bridge.put(bytes(frame), bool(keyframe), timestamp)

    return PacketOutput
