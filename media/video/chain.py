"""Which H.264 encoder a box uses: an override, the config, then probing in ``ORDER``.

Probing opens each candidate and test-encodes one frame at the camera's size; a failure is
logged with its reason and the next candidate is tried. The result, with every attempt and
why it failed, is an ``EncoderChoice`` whose ``status()`` goes into ``roombox status``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import av

from hal.camera import Camera
from hal.errors import DeviceUnavailable, HalError, UnsupportedControl

from media.video.config import VideoConfig
from media.video.encoders import (EncoderBackend, Libx264Encoder, V4l2M2mEncoder,
                                  VaapiEncoder)
from media.video.errors import EncoderUnavailable, NoEncoderAvailable

log = logging.getLogger("roombox.media.video")

# Best first: encoded by the camera itself, then the SoC's encoders, then the CPU.
ORDER = ("camera", "picamera2", "v4l2m2m", "vaapi", "libx264")
ENV_OVERRIDE = "ROOMBOX_VIDEO_ENCODER"
FIRST_PACKET_TIMEOUT_S = 2.0
PROBE_BITRATE_BPS = 1_000_000


@dataclass
class EncoderChoice:
    """The encoder in use and how it was chosen.

    Exactly one of ``backend`` (frames → our encoder) and ``packets`` (the camera encodes;
    an async iterator of its packets, the probe's first packet already taken and kept in
    ``first_packet``) is set.
    """

    name: str
    reason: str
    attempts: list[tuple[str, str]] = field(default_factory=list)
    backend: EncoderBackend | None = None
    packets: AsyncIterator[av.Packet] | None = None
    first_packet: av.Packet | None = None
    probe_ms: float = 0.0

    @property
    def is_hardware(self) -> bool:
        return self.packets is not None or bool(self.backend and self.backend.is_hardware)

    def status(self) -> dict[str, Any]:
        return {"encoder": self.name, "hardware": self.is_hardware, "reason": self.reason,
                "codec": getattr(self.backend, "codec_name", None) if self.backend else self.name,
                "probe_ms": round(self.probe_ms, 1),
                "rejected": {name: why for name, why in self.attempts}}


def frame_backends(config: VideoConfig) -> dict[str, Callable[[], EncoderBackend]]:
    """Factories of the backends that encode our frames, by config name."""
    return {"v4l2m2m": V4l2M2mEncoder, "vaapi": VaapiEncoder,
            "libx264": lambda: Libx264Encoder(config.x264_preset)}


def candidates(config: VideoConfig, environ: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The names to try, in order, and why that list (override, config or probing)."""
    environ = os.environ if environ is None else environ
    override = environ.get(ENV_OVERRIDE, "").strip()
    if override:
        names = [n.strip() for n in override.split(",") if n.strip()]
        unknown = [n for n in names if n not in ORDER]
        if unknown:
            raise EncoderUnavailable(f"video: {ENV_OVERRIDE}={override!r} names {unknown[0]!r}; "
                                     f"expected a comma-separated list of {', '.join(ORDER)}")
        return names, f"{ENV_OVERRIDE}={override}"
    if config.encoder != "auto":
        return [config.encoder], f"video.encoder = {config.encoder!r}"
    return list(ORDER), "probing"


async def choose_encoder(camera: Camera, config: VideoConfig, order: list[str] | None = None,
                         environ: dict[str, str] | None = None,
                         factories: dict[str, Callable[[], EncoderBackend]] | None = None
                         ) -> EncoderChoice:
    """Probe ``order`` (default: override, config, then ``ORDER``) and return the first that
    works. Blocking probes run in a thread. Raises NoEncoderAvailable listing every reason."""
    names, why = (order, "given order") if order is not None else candidates(config, environ)
    factories = factories or frame_backends(config)
    attempts: list[tuple[str, str]] = []
    for name in names:
        started = time.perf_counter()
        try:
            if name in ("camera", "picamera2"):
                choice = await _probe_camera(camera, name, config)
            else:
                backend = factories[name]()
                await asyncio.to_thread(_probe_backend, backend, camera, config)
                choice = EncoderChoice(name, "", backend=backend)
        except (EncoderUnavailable, HalError, OSError) as exc:
            reason = str(exc).removeprefix("video: ")
            log.warning("video: encoder %s unavailable (%s); trying the next", name, reason)
            attempts.append((name, reason))
            continue
        choice.attempts = attempts
        choice.probe_ms = (time.perf_counter() - started) * 1000
        choice.reason = (f"{why}: first that worked" if attempts or len(names) > 1
                         else f"{why}")
        log.info("video: encoding with %s (%s)", name, choice.reason)
        return choice
    raise NoEncoderAvailable("video: no H.264 encoder works: "
                             + "; ".join(f"{n}: {r}" for n, r in attempts))


def _probe_backend(backend: EncoderBackend, camera: Camera, config: VideoConfig) -> None:
    rung = config.rungs(camera.width, camera.height, camera.fps)[0]
    backend.open(rung, PROBE_BITRATE_BPS, config.max_bitrate_bps, gop_frames=rung.fps)
    frame = av.VideoFrame(rung.width, rung.height, "yuv420p")
    frame.pts = 0
    try:
        backend.encode(frame, keyframe=True)
    except (av.FFmpegError, OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        backend.close()
        raise EncoderUnavailable(f"video: {backend.name}: test frame failed to encode ({exc})") from None


async def _probe_camera(camera: Camera, name: str, config: VideoConfig) -> EncoderChoice:
    # picamera2's hardware encoder is reached through the picamera2 camera's packets():
    # hal owns the libcamera pipeline, and the encoder sits inside it.
    if name == "picamera2" and camera.backend != "picamera2":
        raise EncoderUnavailable(f"picamera2: camera backend is {camera.backend!r}, not picamera2")
    if name == "camera" and camera.backend == "picamera2":
        raise EncoderUnavailable("camera: a CSI camera has no encoder of its own (see picamera2)")
    gop = max(1, round(config.keyframe_interval_s * camera.fps))
    packets = camera.packets(bitrate_bps=config.bitrate_bps, gop_frames=gop)
    try:
        async with asyncio.timeout(FIRST_PACKET_TIMEOUT_S):
            first = await anext(packets)
    except (UnsupportedControl, DeviceUnavailable) as exc:
        raise EncoderUnavailable(str(exc)) from None
    except (TimeoutError, StopAsyncIteration):
        await packets.aclose()
        raise EncoderUnavailable(f"{name}: no H.264 from the camera within "
                                 f"{FIRST_PACKET_TIMEOUT_S} s") from None
    return EncoderChoice(name, "", packets=packets, first_packet=first)
