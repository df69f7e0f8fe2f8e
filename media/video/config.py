"""Video config: a frozen dataclass parsed once from the ``[video]`` table.

Bitrates are bits per second; the ladder lists the qualities the sender may step down to
under congestion or CPU overload, best first, as ``"WIDTHxHEIGHT@FPS"``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hal.schema import bounded, choices, parse

from media.video.errors import VideoConfigError

ENCODERS = ("camera", "picamera2", "v4l2m2m", "vaapi", "libx264")
_RUNG = re.compile(r"^(\d+)x(\d+)@(\d+)$")


@dataclass(frozen=True, order=True)
class Rung:
    """One step of the quality ladder."""

    width: int
    height: int
    fps: int

    @classmethod
    def parse(cls, text: str, key: str = "video.ladder") -> "Rung":
        match = _RUNG.match(text)
        if not match:
            raise VideoConfigError(f"{key} entries must look like '1280x720@30', got {text!r}")
        width, height, fps = map(int, match.groups())
        if width % 2 or height % 2 or not (1 <= fps <= 60):
            raise VideoConfigError(f"{key} entry {text!r} needs an even size and 1..60 fps")
        return cls(width, height, fps)

    @property
    def pixel_rate(self) -> int:
        return self.width * self.height * self.fps

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.fps}"


@dataclass(frozen=True)
class VideoConfig:
    """Encoder and sender settings.

    ``encoder``: "auto" probes the chain in ``chain.ORDER``; a name forces that backend.
    ``keyframe_interval_s``: periodic IDR spacing; viewers' PLI/FIR add keyframes on demand,
    at most one per ``keyframe_min_gap_s`` (a storm of PLIs must not turn the stream into
    all-intra). ``max_width``/``max_height``/``max_fps`` cap the camera's size (0 = camera's).
    ``fec``: parity packets inside the H.264 stream (fec.py), sized for the loss the SFU
    reports on our leg but never for less than ``fec_min_loss_pct``: the loss between the
    SFU and each viewer never comes back to us, so the floor protects those legs. The
    parity's bytes come out of the same bitrate (0 % floor and a clean leg: no parity).
    """

    encoder: str = choices("auto", *ENCODERS, default="auto")
    x264_preset: str = choices("ultrafast", "superfast", "veryfast", default="ultrafast")
    keyframe_interval_s: float = bounded(2.0, 0.5, 60.0)
    keyframe_min_gap_s: float = bounded(0.2, 0.0, 5.0)
    bitrate_bps: int = bounded(1_500_000, 50_000, 20_000_000)
    min_bitrate_bps: int = bounded(150_000, 50_000, 20_000_000)
    max_bitrate_bps: int = bounded(2_500_000, 50_000, 20_000_000)
    max_width: int = bounded(0, 0, 3840)
    max_height: int = bounded(0, 0, 2160)
    max_fps: int = bounded(0, 0, 60)
    ladder: tuple[str, ...] = ("1920x1080@30", "1280x720@30", "1280x720@15", "640x360@15")
    adapt: bool = True
    fec: bool = True
    fec_min_loss_pct: float = bounded(0.0, 0.0, 50.0)

    def __post_init__(self) -> None:
        if not self.min_bitrate_bps <= self.bitrate_bps <= self.max_bitrate_bps:
            raise VideoConfigError(
                f"video.bitrate_bps must lie between min_bitrate_bps ({self.min_bitrate_bps}) and "
                f"max_bitrate_bps ({self.max_bitrate_bps}), got {self.bitrate_bps}")
        if not self.ladder:
            raise VideoConfigError("video.ladder must name at least one quality, got []")
        rungs = [Rung.parse(text) for text in self.ladder]
        if rungs != sorted(rungs, key=lambda r: -r.pixel_rate):
            raise VideoConfigError(f"video.ladder must go from best to worst, got {list(self.ladder)}")

    @classmethod
    def from_table(cls, data: dict[str, Any]) -> "VideoConfig":
        """Parse the ``[video]`` table; unknown keys and bad values raise VideoConfigError."""
        return parse(cls, data, "video", VideoConfigError)

    def rungs(self, camera_width: int, camera_height: int, camera_fps: int) -> list[Rung]:
        """The ladder as it applies to this camera: the camera's own size (capped by the
        max_* settings) first, then every configured rung strictly below it."""
        top = Rung(min(camera_width, self.max_width or camera_width),
                   min(camera_height, self.max_height or camera_height),
                   min(camera_fps, self.max_fps or camera_fps))
        below = [r for r in map(Rung.parse, self.ladder)
                 if r.width <= top.width and r.height <= top.height and r.fps <= top.fps and r != top]
        return [top, *below]
