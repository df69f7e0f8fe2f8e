"""Cameras: frames with pts and time base, from picamera2, V4L2 or a simulation.

A backend provides:
- ``__init__(profile)`` that opens the device (blocking) or raises DeviceUnavailable;
- ``_capture() -> av.VideoFrame | None`` (blocking; None = end of stream);
- ``_close()`` (blocking).
Defaults: ``frames()`` runs ``_capture`` in a thread and yields on the event loop;
``packets()``, ``request_keyframe()`` and ``set_bitrate()`` raise UnsupportedControl unless
the camera can hand out encoded H.264 and steer its encoder.
"""
from __future__ import annotations

import time
from fractions import Fraction
from typing import Any, AsyncIterator

import av

from hal.device import Device, ThreadedReader
from hal.errors import UnsupportedControl
from hal.profile import CameraProfile
from hal.registry import open_backend

# 90 kHz is RTP's video clock, so pts go to WebRTC without rescaling.
TIME_BASE = Fraction(1, 90000)


class Camera(Device):
    """A video source. Frames are ``av.VideoFrame`` (yuv420p unless the backend says
    otherwise) with ``pts`` counted in TIME_BASE from the first capture."""

    kind = "camera"

    def __init__(self, profile: CameraProfile) -> None:
        super().__init__()
        self.profile = profile
        self.width = profile.width
        self.height = profile.height
        self.fps = profile.fps
        self._t0: float | None = None
        self.reader: ThreadedReader | None = None
        self.frames_captured = 0

    def _pts_now(self) -> int:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        return round((now - self._t0) / TIME_BASE)

    def _capture(self) -> av.VideoFrame | None:
        raise NotImplementedError

    def capture(self) -> av.VideoFrame | None:
        """One frame, blocking. For tools and tests; live code uses ``frames()``."""
        self._check_open()
        frame = self._capture()
        if frame is not None:
            self.frames_captured += 1
        return frame

    async def frames(self) -> AsyncIterator[av.VideoFrame]:
        """Frames as they are captured; when the consumer is slow, old frames are dropped."""
        self._check_open()
        self.reader = self._reader(f"camera-{self.backend}", self.capture, max_queue=2)
        async for frame in self.reader:
            yield frame

    async def packets(self, bitrate_bps: int | None = None,
                      gop_frames: int | None = None) -> AsyncIterator[av.Packet]:
        """Encoded H.264 (Annex B, SPS/PPS before every IDR) from the camera's own encoder,
        where it has one. ``bitrate_bps`` and ``gop_frames`` (IDR spacing) set that encoder
        where it can be set; None leaves its default."""
        raise UnsupportedControl(f"camera: {self.backend} cannot hand out encoded H.264")
        yield  # pragma: no cover - makes this an async generator

    def request_keyframe(self) -> None:
        """Ask the camera's encoder (while ``packets()`` runs) for an IDR soon. Non-blocking."""
        raise UnsupportedControl(f"camera: {self.backend} cannot be asked for a keyframe")

    def set_bitrate(self, bitrate_bps: int, restart: bool = False) -> bool:
        """Change the camera encoder's target rate while ``packets()`` runs (blocking).

        Returns True when applied. Where the rate cannot change live, returns False, or with
        ``restart`` restarts the encoder at the new rate (a short gap, then an IDR)."""
        raise UnsupportedControl(f"camera: {self.backend} has no bitrate control")

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(width=self.width, height=self.height, fps=self.fps,
                      frames=self.frames_captured,
                      dropped=self.reader.dropped if self.reader else 0)
        return status


def open_camera(profile: CameraProfile) -> Camera:
    """Open the profile's camera (blocking: call through ``asyncio.to_thread`` on the loop).

    Raises DeviceUnavailable with the backend's reason, ProfileError for a bad profile.
    """
    return open_backend("camera", profile.backend, lambda cls: cls(profile))
