"""CSI cameras (Camera Module 2/3, HQ) through picamera2, imported only when chosen.

On Raspberry Pi OS picamera2 comes from apt (python3-picamera2); the venv must be created
with --system-site-packages to see it (README, Raspberry Pi section).
"""
from __future__ import annotations

import av

from hal.camera import TIME_BASE, Camera
from hal.errors import DeviceUnavailable
from hal.profile import CameraProfile

BUFFERS = 4
# libcamera pads each line of a YUV420 buffer to 64 bytes; with such widths there is no
# padding, so the buffer maps onto a yuv420p frame without a repacking copy.
WIDTH_ALIGN = 64


class Picamera2Camera(Camera):
    def __init__(self, profile: CameraProfile) -> None:
        super().__init__(profile)
        try:
            from picamera2 import Picamera2
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

    def _capture(self) -> av.VideoFrame:
        try:
            image = self._camera.capture_array("main")
        except Exception as exc:
            raise DeviceUnavailable(f"picamera2: capture failed ({type(exc).__name__}: {exc})") from None
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = self._pts_now()
        frame.time_base = TIME_BASE
        return frame

    def _close(self) -> None:
        self._camera.stop()
        self._camera.close()

    def status(self):
        status = super().status()
        status["model"] = self.model
        return status
