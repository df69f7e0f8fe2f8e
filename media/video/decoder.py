"""H.264 decoders for remote participants' video: hardware where the box has one, else
FFmpeg's software decoder. ``open_decoder()`` probes with a real keyframe, like the encoder
chain, and logs why each candidate was rejected.
"""
from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av

from media.video.errors import VideoError

log = logging.getLogger("roombox.media.video")

DECODER_ORDER = ("v4l2m2m", "vaapi", "software")


class DecoderUnavailable(VideoError, RuntimeError):
    """A decoder backend cannot be used here."""


class VideoDecoder:
    """Decodes Annex-B H.264 access units to ``av.VideoFrame`` (blocking; one thread)."""

    def __init__(self, name: str, ctx: av.VideoCodecContext, is_hardware: bool) -> None:
        self.name = name
        self.is_hardware = is_hardware
        self._ctx = ctx

    def decode(self, data: bytes, pts: int | None = None) -> list[av.VideoFrame]:
        """Raises av.FFmpegError on a broken access unit (the caller asks for a keyframe)."""
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = Fraction(1, 90000)
        return self._ctx.decode(packet)


def _open(name: str) -> VideoDecoder:
    try:
        if name == "v4l2m2m":
            ctx = av.CodecContext.create("h264_v4l2m2m", "r")
        elif name == "vaapi":
            from av.codec.hwaccel import HWAccel
            ctx = av.CodecContext.create("h264", "r", hwaccel=HWAccel("vaapi", allow_software_fallback=False))
        else:
            ctx = av.CodecContext.create("h264", "r")
        # Output each picture as soon as it is complete; our encoders send no B-frames.
        ctx.flags |= av.codec.context.Flags.low_delay
        ctx.open()
        if name == "vaapi" and not ctx.is_hwaccel:
            # PyAV falls back to software quietly when no VAAPI device exists.
            raise DecoderUnavailable("video: decoder vaapi: no VAAPI device (PyAV fell back to software)")
    except (av.FFmpegError, OSError, ValueError, NotImplementedError) as exc:
        raise DecoderUnavailable(f"video: decoder {name}: cannot open ({exc})") from None
    return VideoDecoder(name, ctx, is_hardware=name != "software")


def _test_keyframe() -> bytes:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 90000), Fraction(30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    frame = av.VideoFrame(320, 240, "yuv420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in encoder.encode(frame) + encoder.encode(None))


def open_decoder(order: tuple[str, ...] = DECODER_ORDER) -> tuple[VideoDecoder, dict[str, str]]:
    """The first decoder in ``order`` that decodes a test keyframe, and why the others failed
    (blocking: call from a thread). Raises DecoderUnavailable if none works."""
    rejected: dict[str, str] = {}
    keyframe = None
    for name in order:
        try:
            decoder = _open(name)
            keyframe = keyframe or _test_keyframe()
            if not decoder.decode(keyframe, 0) and not decoder._ctx.decode(None):
                raise DecoderUnavailable(f"video: decoder {name}: test keyframe gave no picture")
        except (DecoderUnavailable, av.FFmpegError) as exc:
            rejected[name] = str(exc).removeprefix("video: ")
            log.info("video: decoder %s unavailable (%s)", name, rejected[name])
            continue
        # A fresh context: the probe's flush ended the first one's stream.
        return _open(name), rejected
    raise DecoderUnavailable("video: no H.264 decoder works: " + "; ".join(rejected.values()))


def decoder_status(decoder: VideoDecoder, rejected: dict[str, str]) -> dict[str, Any]:
    return {"decoder": decoder.name, "hardware": decoder.is_hardware, "rejected": rejected}
