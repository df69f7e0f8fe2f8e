"""H.264 encoder backends that turn ``av.VideoFrame`` into ``av.Packet`` (Annex B, SPS/PPS
repeated in-band before every IDR so a viewer can start at any keyframe).

Every method is blocking and runs on the encoder's own thread (see ``encoder.VideoEncoder``);
an instance is used by one thread at a time. aiortc's built-in H.264 encoder is never used:
it runs x264 at its default preset (~25 ms per 720p frame here) and cannot be steered.
"""
from __future__ import annotations

import glob
import logging
import os
from fractions import Fraction
from pathlib import Path

import av
from av.codec.hwaccel import HWAccel
from av.video.frame import PictureType

from media.video.config import Rung
from media.video.errors import EncoderUnavailable
from media.video.live_vbv import LiveVbv

log = logging.getLogger("roombox.media.video")

# RTP's video clock: camera pts arrive in it and packets leave in it, no rescaling.
TIME_BASE = Fraction(1, 90000)
# VBV buffer in seconds of the target rate: bounds a keyframe to about this much of the
# rate (2.6 kB at 150 kbit/s, 15 kB at 1.5 Mbit/s, 360p), so it does not queue hundreds of
# milliseconds of data in front of the next frames or overflow a short bottleneck queue.
VBV_BUFFER_S = 0.5
# Above this quantiser an H.264 picture is a smear nobody can read (measured at 360p and
# 150 kbit/s: two forced keyframes in a row drained the VBV and x264 went to QP 51 — a
# keyframe of 1.2 kB, 20 frames whose stamp could not be read). Capped, x264 overshoots
# the rate briefly instead (256 kbit/s for that second), and the ladder's smaller rungs,
# not worse pictures, are the answer to a rate that low.
X264_QP_MAX = 40


class EncoderBackend:
    """One way of encoding frames to H.264.

    Subclasses provide ``open()``, ``encode()`` and ``close()``; ``set_bitrate()`` returns
    False when the backend cannot change its rate while open (the caller then reopens it).
    """

    name = "?"
    is_hardware = False

    def open(self, rung: Rung, bitrate_bps: int, max_bitrate_bps: int, gop_frames: int) -> None:
        raise NotImplementedError

    def encode(self, frame: av.VideoFrame, keyframe: bool) -> list[av.Packet]:
        raise NotImplementedError

    def set_bitrate(self, bitrate_bps: int) -> bool:
        return False

    def close(self) -> None:
        pass


class PyAvEncoder(EncoderBackend):
    """An FFmpeg encoder through PyAV's CodecContext."""

    codec_name = "?"
    pix_fmt = "yuv420p"      # what the encoder is fed; other frames are converted first

    def __init__(self) -> None:
        self._ctx: av.VideoCodecContext | None = None

    def _options(self, bitrate_bps: int, max_bitrate_bps: int) -> dict[str, str]:
        return {}

    def _configure(self, ctx: av.VideoCodecContext) -> None:
        """Settings beyond the common ones, before the context opens."""

    def _create(self) -> av.VideoCodecContext:
        try:
            return av.CodecContext.create(self.codec_name, "w")
        except (av.FFmpegError, ValueError) as exc:
            raise EncoderUnavailable(f"video: {self.name}: this FFmpeg has no {self.codec_name} "
                                     f"encoder ({exc})") from None

    def open(self, rung: Rung, bitrate_bps: int, max_bitrate_bps: int, gop_frames: int) -> None:
        self.close()
        where = f"{self.codec_name} at {rung}"
        ctx = self._create()
        ctx.width, ctx.height = rung.width, rung.height
        ctx.pix_fmt = self.pix_fmt
        ctx.time_base = TIME_BASE
        # Without framerate, rate control derives fps from the 1/90000 time base and starves
        # every frame (measured: gray ~25-byte frames from libx264).
        ctx.framerate = Fraction(rung.fps)
        ctx.bit_rate = bitrate_bps
        ctx.gop_size = gop_frames
        ctx.options = self._options(bitrate_bps, max_bitrate_bps)
        self._configure(ctx)
        try:
            ctx.open()
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise EncoderUnavailable(f"video: {self.name}: cannot open {where} ({exc})") from None
        self._ctx = ctx

    def encode(self, frame: av.VideoFrame, keyframe: bool) -> list[av.Packet]:
        if frame.format.name != self.pix_fmt:
            # A UVC camera's YUYV or MJPEG (4:2:2) frames, NV12 for a GPU: convert here rather
            # than let PyAV do it inside encode(), whose converted frame would lose the
            # picture type set below.
            converted = frame.reformat(format=self.pix_fmt)
            converted.pts, converted.time_base = frame.pts, frame.time_base
            frame = converted
        # FFmpeg encoders (libx264 with forced-idr, v4l2m2m via FORCE_KEY_FRAME) turn an
        # I picture type on the input frame into an IDR.
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        packets = self._ctx.encode(frame)
        for packet in packets:
            packet.time_base = TIME_BASE
        return packets

    def close(self) -> None:
        self._ctx = None  # PyAV frees the context when the last reference goes


class Libx264Encoder(PyAvEncoder):
    """Software x264: ultrafast/superfast, zerolatency (no B-frames, no lookahead, sliced
    threads), constrained baseline, which every browser decodes. CBR: the VBV cap is the
    target itself and moves with it (``LiveVbv``), the only mode in which x264 follows a
    new rate within a second; with the cap above the target it averages over the whole
    call and hardly moves (measured, see media/video/live_vbv.py). Where the VBV cannot be
    reached, ``set_bitrate()`` says so and big changes reopen the encoder."""

    name = "libx264"
    codec_name = "libx264"

    def __init__(self, preset: str = "ultrafast") -> None:
        super().__init__()
        self.preset = preset
        self._vbv: LiveVbv | None = None

    def _options(self, bitrate_bps: int, max_bitrate_bps: int) -> dict[str, str]:
        return {"preset": self.preset, "tune": "zerolatency", "profile": "baseline",
                "forced-idr": "1", "maxrate": str(bitrate_bps),
                "bufsize": str(int(bitrate_bps * VBV_BUFFER_S)), "qmax": str(X264_QP_MAX)}

    def open(self, rung: Rung, bitrate_bps: int, max_bitrate_bps: int, gop_frames: int) -> None:
        super().open(rung, bitrate_bps, max_bitrate_bps, gop_frames)
        self._vbv = LiveVbv(self._ctx)

    def set_bitrate(self, bitrate_bps: int) -> bool:
        if self._vbv is None or not self._vbv.set(bitrate_bps, int(bitrate_bps * VBV_BUFFER_S)):
            return False
        self._ctx.bit_rate = bitrate_bps
        return True


class V4l2M2mEncoder(PyAvEncoder):
    """The SoC's memory-to-memory encoder (Raspberry Pi 4: bcm2835-codec on /dev/video11)."""

    name = "v4l2m2m"
    codec_name = "h264_v4l2m2m"
    is_hardware = True

    def open(self, rung: Rung, bitrate_bps: int, max_bitrate_bps: int, gop_frames: int) -> None:
        try:
            super().open(rung, bitrate_bps, max_bitrate_bps, gop_frames)
        except EncoderUnavailable as exc:
            # FFmpeg scans /dev/video* for an M2M H.264 device and says only EINVAL when
            # none fits: name what is there, so status tells a Pi 4 without the codec
            # overlay from a box that never had one.
            raise EncoderUnavailable(f"{exc}; {describe_devices('/dev/video*', V4L2_NAMES)}") from None

    # FFmpeg's wrapper asks the driver to repeat SPS/PPS before each IDR and maps an I
    # picture type to V4L2's FORCE_KEY_FRAME, so no options are needed here. Its rate cannot
    # change while open: set_bitrate() keeps the default False and the encoder reopens.


class VaapiEncoder(PyAvEncoder):
    """The Intel/AMD GPU's encoder through libva: FFmpeg's ``h264_vaapi`` (Intel and AMD),
    else ``h264_qsv`` (Intel Quick Sync; PyAV's wheels include it, but not h264_vaapi, which
    needs a PyAV built against the system's FFmpeg). Frames are converted to NV12, the
    surfaces' layout; PyAV uploads them to a GPU surface for h264_vaapi (its hardware
    encoding), h264_qsv takes them from system memory. Neither changes its rate while open:
    a big REMB change reopens it. Untested on hardware here (no GPU): probing says why it
    was rejected, and ``ROOMBOX_HIL=1`` runs the encoder on a box that has one."""

    name = "vaapi"
    is_hardware = True
    pix_fmt = "nv12"
    CODECS = ("h264_vaapi", "h264_qsv")
    codec_name = CODECS[0]

    def _create(self) -> av.VideoCodecContext:
        if self.codec_name != "h264_vaapi":
            return super()._create()
        if "h264_vaapi" not in av.codecs_available:
            super()._create()   # raises, naming what this FFmpeg lacks
        try:
            return av.CodecContext.create(self.codec_name, "w",
                                          hwaccel=HWAccel("vaapi", allow_software_fallback=False))
        except (av.FFmpegError, OSError, ValueError, NotImplementedError, TypeError) as exc:
            raise EncoderUnavailable(f"video: {self.name}: no VAAPI device for h264_vaapi "
                                     f"({type(exc).__name__}: {exc})") from None

    def _configure(self, ctx: av.VideoCodecContext) -> None:
        ctx.max_b_frames = 0     # B-frames wait for a later frame: latency, and baseline has none

    def _options(self, bitrate_bps: int, max_bitrate_bps: int) -> dict[str, str]:
        # async_depth 1: the encoder hands back each frame before taking the next (its
        # default queues frames, which is latency a call cannot afford).
        if self.codec_name == "h264_vaapi":
            return {"profile": "constrained_baseline", "rc_mode": "VBR", "async_depth": "1"}
        return {"profile": "baseline", "preset": "veryfast", "forced_idr": "1",
                "async_depth": "1", "low_delay_brc": "1"}

    def open(self, rung: Rung, bitrate_bps: int, max_bitrate_bps: int, gop_frames: int) -> None:
        reasons = []
        for codec in self.CODECS:
            self.codec_name = codec
            try:
                super().open(rung, bitrate_bps, max_bitrate_bps, gop_frames)
                return
            except EncoderUnavailable as exc:
                reasons.append(str(exc).removeprefix(f"video: {self.name}: "))
        self.codec_name = self.CODECS[0]
        raise EncoderUnavailable(f"video: {self.name}: {'; '.join(reasons)}; "
                                 f"{describe_devices('/dev/dri/renderD*', DRM_NAMES)}")


# Where a device's driver name can be read, to say which device a probe could have used.
V4L2_NAMES = "/sys/class/video4linux/{name}/name"
DRM_NAMES = "/sys/class/drm/{name}/device/driver"


def describe_devices(pattern: str, names: str) -> str:
    """``'/dev/video*: video0 (uvcvideo), video11 (bcm2835-codec-encode)'`` or that there is none."""
    found = []
    for path in sorted(glob.glob(pattern)):
        name = os.path.basename(path)
        where = names.format(name=name)
        try:
            label = (os.path.basename(os.readlink(where)) if os.path.islink(where)
                     else Path(where).read_text().strip())
        except OSError:
            label = "?"
        found.append(f"{name} ({label})")
    return f"{pattern}: {', '.join(found)}" if found else f"no {pattern} device on this machine"
