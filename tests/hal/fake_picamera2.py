"""A stand-in for picamera2 (and its ``videodev2`` dependency) at the lowest seam we touch:
the ``Picamera2`` object, ``H264Encoder`` and ``Output``. picamera2 needs libcamera and a Pi,
so it cannot be installed here.

It is held to picamera2's contract as read in raspberrypi/picamera2 (commit 3e6dff0, 2026-05):
- ``Picamera2.start_encoder(encoder, output)`` (picamera2.py): sets ``encoder.output`` (which
  refuses anything not an ``Output``), the stream's size/format/stride, a nominal
  ``framerate`` if unset, then ``encoder.start()``; ``stop_encoder(encoder)`` calls
  ``encoder.stop()``. The camera's thread calls ``encoder.encode(stream, request)`` for every
  running encoder with every frame.
- ``Encoder.start`` (encoders/encoder.py) raises if running, ``_setup(quality)`` (H264Encoder
  keeps an explicit bitrate), resets ``firsttimestamp``, starts the outputs, ``_start()``;
  ``stop`` reverses it. Timestamps are µs since the first frame encoded after a start.
- ``H264Encoder(bitrate, repeat=True, iperiod, framerate, enable_sps_framerate, qp, profile)``
  (encoders/h264_encoder.py): ``repeat`` = V4L2's REPEAT_SEQ_HEADER (SPS/PPS before every
  IDR), ``iperiod`` = the IDR spacing, ``profile`` from a fixed name table,
  ``force_key_frame()`` counts a request that ``V4L2Encoder._encode`` turns into
  FORCE_KEY_FRAME before the next buffer. ``vd`` is its open device file.
- ``Output.outputframe(frame, keyframe=True, timestamp=None, packet=None, audio=False)``
  (outputs/output.py), called on the encoder's thread with the encoded bytes.
- On a Pi 5 (``Platform.PISP``) ``picamera2.encoders.H264Encoder`` is libav software.

The encoding itself is real: libx264 through PyAV stands in for the VideoCore, and the
frames carry hal's stamps, so tests decode what comes out and read frame counters.
"""
from __future__ import annotations

import ctypes
import enum
import fcntl
import sys
import threading
import time
import types
from fractions import Fraction

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from hal.camera import stamp as stamps

# Linux's values (videodev2.h / v4l2-controls.h), as the real videodev2 module has them.
V4L2_CID_MPEG_VIDEO_BITRATE = 0x009909CF
VIDIOC_S_CTRL = 0xC008561C
PROFILES = ("baseline", "constrained baseline", "main", "high")
NAL_SPS, NAL_PPS = 7, 8


class v4l2_control(ctypes.Structure):  # noqa: N801 - the kernel's name, as videodev2 spells it
    _fields_ = [("id", ctypes.c_uint32), ("value", ctypes.c_int32)]


class Platform(enum.Enum):
    VC4 = 0
    PISP = 1


class Quality(enum.Enum):
    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class Output:
    def __init__(self, pts=None):
        self.recording = False

    def start(self):
        self.recording = True

    def stop(self):
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        pass


class FakeRequest:
    """What the camera thread hands an encoder: one frame and its sensor timestamp (ns)."""

    def __init__(self, image: np.ndarray, sensor_timestamp_ns: int) -> None:
        self.image = image
        self.sensor_timestamp_ns = sensor_timestamp_ns


class H264Encoder:
    instances: list["H264Encoder"] = []
    start_error: Exception | None = None   # e.g. FileNotFoundError for a missing /dev/video11

    def __init__(self, bitrate=None, repeat=True, iperiod=None, framerate=None,
                 enable_sps_framerate=False, qp=None, profile=None):
        self.bitrate, self.repeat, self.iperiod, self.framerate = bitrate, repeat, iperiod, framerate
        self.qp, self.profile = qp, profile
        self.width = self.height = self.stride = 0
        self.format = None
        self._output: list[Output] = []
        self._running = False
        self._lock = threading.Lock()
        self.firsttimestamp = None
        self._key_frames_requested = 0
        self._key_frames_generated = 0
        self.vd = None
        self._ctx = None
        self._sent_headers = False
        self.starts = 0
        self.idr_frames = 0
        H264Encoder.instances.append(self)

    @property
    def running(self):
        return self._running

    @property
    def output(self):
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value):
        if not isinstance(value, Output):
            raise RuntimeError("Must pass Output")
        self._output = [value]

    def force_key_frame(self):
        self._key_frames_requested += 1

    def start(self, quality=None):
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            if self.bitrate is None and self.qp is None:     # H264Encoder._setup
                complexity = self.width * self.height * (self.framerate or 30)
                self.bitrate = int(6_000_000 * complexity / (1920 * 1080 * 30))
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def _start(self):
        if self.profile is not None and self.profile.lower() not in PROFILES:
            raise RuntimeError("Profile " + self.profile + " not recognised")
        if H264Encoder.start_error is not None:
            self._running = False
            raise H264Encoder.start_error
        self.vd = open("/dev/null", "rb+", buffering=0)   # stands in for /dev/video11
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base, ctx.framerate = Fraction(1, 1_000_000), Fraction(round(self.framerate or 30))
        ctx.bit_rate = self.bitrate
        ctx.gop_size = self.iperiod or 60
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                       "forced-idr": "1", "maxrate": str(self.bitrate),
                       "bufsize": str(self.bitrate // 2)}
        ctx.open()
        self._ctx = ctx
        self._sent_headers = False
        self.starts += 1

    def stop(self):
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self.vd.close()
            self._ctx = None
            for out in self._output:
                out.stop()

    def apply_v4l2_bitrate(self, value: int) -> None:
        """What bcm2835-codec does with VIDEO_BITRATE while streaming."""
        self._ctx.bit_rate = value

    def encode(self, stream, request: FakeRequest):
        with self._lock:
            if not self._running:
                return
            self._encode(stream, request)

    def _encode(self, stream, request: FakeRequest):
        ts = request.sensor_timestamp_ns // 1000
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
        timestamp_us = ts - self.firsttimestamp
        frame = av.VideoFrame.from_ndarray(request.image, format="yuv420p")
        frame.pts = timestamp_us
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1
            frame.pict_type = PictureType.I
        for packet in self._ctx.encode(frame):
            data = bytes(packet)
            if packet.is_keyframe:
                self.idr_frames += 1
                if not self.repeat and self._sent_headers:
                    data = strip_parameter_sets(data)
                self._sent_headers = True
            for out in self._output:
                out.outputframe(data, packet.is_keyframe, timestamp_us)


def strip_parameter_sets(data: bytes) -> bytes:
    nals = data.split(b"\x00\x00\x00\x01")
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals if n and n[0] & 0x1F not in (NAL_SPS, NAL_PPS))


class Picamera2:
    cameras = [{"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a",
                "Num": 0}]
    instances: list["Picamera2"] = []

    @staticmethod
    def global_camera_info():
        return list(Picamera2.cameras)

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        self.camera_num = camera_num
        self.camera_config = None
        self.encode_stream_name = "main"
        self._encoders: set[H264Encoder] = set()
        self.lock = threading.Lock()
        self.started = False
        self.is_open = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._image: np.ndarray | None = None
        Picamera2.instances.append(self)

    def create_video_configuration(self, main=None, controls=None, buffer_count=6, **kwargs):
        main = dict(main or {})
        main.setdefault("format", "XBGR8888")
        return {"main": main, "controls": dict(controls or {}), "buffer_count": buffer_count}

    def configure(self, camera_config=None):
        size = camera_config["main"]["size"]
        camera_config["main"]["stride"] = size[0]
        self.camera_config = camera_config

    def camera_configuration(self):
        return self.camera_config

    @property
    def fps(self) -> float:
        return self.camera_config["controls"].get("FrameRate", 30.0)

    def start(self, config=None, show_preview=False):
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fake-libcamera", daemon=True)
        self._thread.start()

    def _run(self):
        width, height = self.camera_config["main"]["size"]
        # Moving noise plus fresh sensor noise: every frame costs whatever bits it is given.
        texture = np.random.default_rng(1).integers(16, 224, (height, width), np.uint8)
        noise = np.random.default_rng(2)
        counter, due = 0, time.monotonic()
        while not self._stop.is_set():
            due += 1 / self.fps
            time.sleep(max(0.0, due - time.monotonic()))
            image = np.full((height * 3 // 2, width), 128, np.uint8)
            image[:height] = np.roll(texture, 4 * counter, axis=1) + noise.integers(0, 12, (height, width), np.uint8)
            stamps.write_yuv420(image, width, height, stamps.Stamp(counter, stamps.monotonic_us()))
            self._image = image
            request = FakeRequest(image, time.monotonic_ns())
            with self.lock:
                encoders = list(self._encoders)
            for encoder in encoders:
                encoder.encode(self.encode_stream_name, request)
            counter += 1

    def capture_array(self, name="main", wait=None, signal_function=None):
        while self._image is None:
            time.sleep(0.005)
        return self._image.copy()

    def start_encoder(self, encoder=None, output=None, pts=None, quality=None, name=None):
        if output is not None:
            encoder.output = output
        streams = self.camera_configuration()
        if not streams:
            raise RuntimeError("Camera has not been configured")
        name = name or self.encode_stream_name
        encoder.width, encoder.height = streams[name]["size"]
        encoder.format = streams[name]["format"]
        encoder.stride = streams[name]["stride"]
        if encoder.framerate is None:
            encoder.framerate = min(30.0, self.fps)
        encoder.start(quality=quality)
        with self.lock:
            self._encoders.add(encoder)

    def stop_encoder(self, encoders=None):
        targets = list(self._encoders) if encoders is None else [encoders]
        for encoder in targets:
            encoder.stop()
        with self.lock:
            for encoder in targets:
                self._encoders.discard(encoder)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self.started = False

    def close(self):
        if self.started:
            self.stop()
        self.is_open = False


class FakePicamera2:
    """Handle a test gets: the classes, and switches for the platform and failures."""

    def __init__(self, monkeypatch) -> None:
        self.platform = Platform.VC4
        self.Picamera2 = Picamera2
        self.H264Encoder = H264Encoder
        self._monkeypatch = monkeypatch

    @property
    def encoders(self) -> list[H264Encoder]:
        return H264Encoder.instances

    def accept_live_bitrate(self) -> None:
        """Make the encoder's device take VIDIOC_S_CTRL(VIDEO_BITRATE) as bcm2835-codec does
        (by default the stand-in device, /dev/null, refuses every ioctl with ENOTTY)."""
        real_ioctl = fcntl.ioctl

        def ioctl(fd, request, arg=0, *rest):
            for encoder in H264Encoder.instances:
                if fd is encoder.vd and request == VIDIOC_S_CTRL and arg.id == V4L2_CID_MPEG_VIDEO_BITRATE:
                    encoder.apply_v4l2_bitrate(arg.value)
                    return 0
            return real_ioctl(fd, request, arg, *rest)

        self._monkeypatch.setattr(fcntl, "ioctl", ioctl)


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


@pytest.fixture
def fake_picamera2(monkeypatch):
    """Install the stand-in as ``picamera2`` and ``videodev2`` for one test."""
    handle = FakePicamera2(monkeypatch)
    H264Encoder.instances, Picamera2.instances, H264Encoder.start_error = [], [], None
    modules = {
        "picamera2": _module("picamera2", Picamera2=Picamera2),
        "picamera2.encoders": _module("picamera2.encoders", H264Encoder=H264Encoder, Quality=Quality),
        "picamera2.outputs": _module("picamera2.outputs", Output=Output),
        "picamera2.platform": _module("picamera2.platform", Platform=Platform,
                                      get_platform=lambda: handle.platform),
        "videodev2": _module("videodev2", v4l2_control=v4l2_control, VIDIOC_S_CTRL=VIDIOC_S_CTRL,
                             V4L2_CID_MPEG_VIDEO_BITRATE=V4L2_CID_MPEG_VIDEO_BITRATE),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    yield handle
    for camera in Picamera2.instances:
        camera.close()
