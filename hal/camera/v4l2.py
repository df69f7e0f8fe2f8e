"""USB/UVC cameras through PyAV's video4linux2 input: raw (YUYV), MJPEG or camera-native H.264.

Frames are decoded from MJPEG/H.264 in the capture thread; ``packets()`` hands a camera's
own H.264 to the encoder chain untouched, which is the cheapest path a box can have.
"""
from __future__ import annotations

import glob
import os
from typing import AsyncIterator

import av

from hal.camera import TIME_BASE, Camera
from hal.errors import DeviceUnavailable, UnsupportedControl
from hal.profile import CameraProfile

# What the profile's format means to FFmpeg's v4l2 input, tried in this order for "auto".
INPUT_FORMATS = {"mjpeg": "mjpeg", "raw": "yuyv422", "h264": "h264"}
AUTO_ORDER = ("mjpeg", "raw")


class V4l2Camera(Camera):
    def __init__(self, profile: CameraProfile) -> None:
        super().__init__(profile)
        device = profile.device
        if not os.path.exists(device):
            present = sorted(glob.glob("/dev/video*"))
            raise DeviceUnavailable(f"v4l2: no camera at '{device}' (present: {', '.join(present) or 'no /dev/video* at all'})")
        order = AUTO_ORDER if profile.format == "auto" else (profile.format,)
        reasons = []
        for fmt in order:
            try:
                self._container = av.open(device, format="video4linux2", options={
                    "video_size": f"{self.width}x{self.height}", "framerate": str(self.fps),
                    "input_format": INPUT_FORMATS[fmt]})
                self.input_format = fmt
                break
            except (av.FFmpegError, OSError) as exc:
                reasons.append(f"{fmt}: {exc}")
        else:
            raise DeviceUnavailable(f"v4l2: cannot open '{device}' at {self.width}x{self.height} "
                                    f"{self.fps} fps ({'; '.join(reasons)})")
        self._stream = self._container.streams.video[0]
        self._demux = self._container.demux(self._stream)
        self._decoded: list[av.VideoFrame] = []

    def _next_packet(self) -> av.Packet:
        try:
            for packet in self._demux:
                if packet.size:
                    return packet
        except (av.FFmpegError, OSError) as exc:
            raise DeviceUnavailable(f"v4l2: capture from '{self.profile.device}' failed ({exc})") from None
        raise DeviceUnavailable(f"v4l2: '{self.profile.device}' stopped delivering frames")

    def _capture(self) -> av.VideoFrame:
        while not self._decoded:
            self._decoded.extend(self._next_packet().decode())
        frame = self._decoded.pop(0)
        frame.pts = self._pts_now()
        frame.time_base = TIME_BASE
        return frame

    def _capture_packet(self) -> av.Packet:
        packet = self._next_packet()
        packet.pts = packet.dts = self._pts_now()
        packet.time_base = TIME_BASE
        return packet

    async def packets(self, bitrate_bps: int | None = None,
                      gop_frames: int | None = None) -> AsyncIterator[av.Packet]:
        # A UVC camera's encoder settings sit behind vendor extension units: its own rate
        # and GOP are used, and request_keyframe()/set_bitrate() stay unsupported.
        if self.input_format != "h264":
            raise UnsupportedControl(f"camera: v4l2 '{self.profile.device}' delivers {self.input_format}, "
                                     "not H.264 (set camera.format = \"h264\" if the camera offers it)")
        self._check_open()
        self.reader = self._reader("camera-v4l2-h264", self._capture_packet, max_queue=8)
        async for packet in self.reader:
            yield packet

    def _close(self) -> None:
        self._container.close()

    def status(self):
        status = super().status()
        status.update(device=self.profile.device, input_format=self.input_format)
        return status
