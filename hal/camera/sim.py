"""Simulated camera: a moving, textured test pattern, or a video file played in a loop.

Every frame carries a stamp (frame counter and CLOCK_MONOTONIC capture time, see
``hal.camera.stamp``) so receivers can check order and measure latency end to end.
"""
from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np

from hal.camera import TIME_BASE, Camera
from hal.camera import stamp as stamps
from hal.errors import DeviceUnavailable
from hal.profile import CameraProfile

SQUARE_SPEED_PX_S = 240


class SimCamera(Camera):
    """Test pattern (``source = "pattern"``) or a video file (``source = <path>``), paced at
    the profile's frame rate."""

    def __init__(self, profile: CameraProfile) -> None:
        super().__init__(profile)
        self._counter = 0
        self._next_deadline: float | None = None
        self._container = None
        self._decoded = None
        if profile.source == "pattern":
            self._texture = _texture(self.width, self.height)
        else:
            self._open_file(Path(profile.source))

    def _open_file(self, path: Path) -> None:
        try:
            self._container = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise DeviceUnavailable(f"camera: sim cannot open video file '{path}' ({exc})") from None
        if not self._container.streams.video:
            self._container.close()
            raise DeviceUnavailable(f"camera: sim found no video stream in '{path}'")
        self._decoded = self._container.decode(video=0)

    def _capture(self) -> av.VideoFrame:
        self._pace()
        pts = self._pts_now()
        if self._container is None:
            image = self._pattern(pts * float(TIME_BASE))
        else:
            image = self._file_image()
        stamps.write_yuv420(image, self.width, self.height, stamps.Stamp(self._counter, stamps.monotonic_us()))
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = pts
        frame.time_base = TIME_BASE
        self._counter += 1
        return frame

    def _pace(self) -> None:
        now = time.monotonic()
        if self._next_deadline is None:
            self._next_deadline = now
        delay = self._next_deadline - now
        if delay > 0:
            time.sleep(delay)
        # After a stall, restart the cadence instead of bursting to catch up.
        self._next_deadline = max(self._next_deadline, now - 1.0 / self.fps) + 1.0 / self.fps

    def _pattern(self, t: float) -> np.ndarray:
        w, h = self.width, self.height
        shift = int(t * 60) % w
        image = self._texture.copy()
        image[:h] = np.roll(self._texture[:h], -shift, axis=1)
        # A bright square crossing the picture makes motion obvious to a viewer.
        size = max(16, h // 6)
        x = int(t * SQUARE_SPEED_PX_S) % max(1, w - size)
        y = h // 2 - size // 2
        image[y:y + size, x:x + size] = 235
        return image

    def _file_image(self) -> np.ndarray:
        try:
            frame = next(self._decoded)
        except StopIteration:
            self._container.seek(0)
            self._decoded = self._container.decode(video=0)
            frame = next(self._decoded)
        frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        return frame.to_ndarray()

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()

    def status(self):
        status = super().status()
        status["source"] = self.profile.source
        return status


def _texture(width: int, height: int) -> np.ndarray:
    """A yuv420p image (rows: Y, then U and V quarter planes) with diagonal stripes and a
    colour gradient, periodic in x so that scrolling it by np.roll has no seam."""
    x = np.arange(width)
    y = np.arange(height)[:, None]
    luma = 110 + 60 * np.sin(2 * np.pi * (x * 6 / width + y / 48.0)) + 30 * np.sin(2 * np.pi * x * 2 / width)
    cw, ch = width // 2, height // 2
    cx = np.arange(cw)
    cy = np.arange(ch)[:, None]
    u = 128 + 60 * np.sin(2 * np.pi * cx / cw) + 0 * cy
    v = 128 + 60 * np.cos(2 * np.pi * cy / ch) + 0 * cx
    chroma = np.concatenate([u.reshape(-1), v.reshape(-1)]).reshape(ch, width)
    return np.concatenate([luma, chroma]).clip(16, 240).astype(np.uint8)
