"""Cameras: the simulated and file cameras through real PyAV (encode, decode, read stamps);
real backends on the failures that can happen here."""
from __future__ import annotations

import asyncio
import dataclasses
import glob
from fractions import Fraction

import av
import pytest

from hal.camera import TIME_BASE, open_camera
from hal.camera import stamp as stamps
from hal.errors import DeviceClosed, DeviceUnavailable, UnsupportedControl
from hal.profile import CameraProfile
from tests.hil import require_hardware

SMALL = CameraProfile(backend="sim", width=320, height=180, fps=30)


def encode_decode(frames, width, height, bitrate_bps=150_000):
    """Through libx264 and a separate H.264 decoder, as a far end would see them."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = TIME_BASE, Fraction(30)
    encoder.bit_rate = bitrate_bps
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    packets = [p for f in frames for p in encoder.encode(f)] + list(encoder.encode(None))
    decoder = av.CodecContext.create("h264", "r")
    return [d for p in packets for d in decoder.decode(p)]


def test_sim_camera_frames_carry_pts_and_survive_h264_with_counters():
    with open_camera(SMALL) as camera:
        frames = [camera.capture() for _ in range(15)]
    assert camera.backend == "sim"
    assert all(f.time_base == TIME_BASE for f in frames)
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[0] == 0
    # Paced at the profile's rate: 14 intervals of ~1/30 s.
    assert 0.35 < float((pts[-1] - pts[0]) * TIME_BASE) < 1.5   # upper bound loose: a loaded CI stalls
    decoded = encode_decode(frames, 320, 180)
    assert [stamps.read_frame(f).counter for f in decoded] == list(range(15))


def test_sim_camera_stamps_capture_time_on_the_monotonic_clock():
    with open_camera(SMALL) as camera:
        before = stamps.monotonic_us()
        frame = camera.capture()
        after = stamps.monotonic_us()
    stamp = stamps.read_frame(frame)
    assert before <= stamp.time_us <= after


def test_sim_pattern_moves():
    with open_camera(SMALL) as camera:
        first, second = camera.capture().to_ndarray(), camera.capture().to_ndarray()
    stamp_rows = stamps.stamp_height(320)
    assert (first[stamp_rows:180] != second[stamp_rows:180]).mean() > 0.2


async def test_frames_async_iterator_delivers_at_the_configured_rate():
    camera = open_camera(SMALL)
    try:
        got = []
        async with asyncio.timeout(5):
            async for frame in camera.frames():
                got.append(frame)
                if len(got) == 10:
                    break
    finally:
        camera.close()
    counters = [stamps.read_frame(f).counter for f in got]
    assert counters == list(range(10))
    assert camera.status()["frames"] >= 10   # the reader may have captured one more before close()


def test_file_camera_plays_a_video_file_in_a_loop(tmp_path):
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame(160, 120, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([40 * i + 20]) * plane.buffer_size)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    profile = dataclasses.replace(SMALL, source=str(path), fps=60)
    with open_camera(profile) as camera:
        frames = [camera.capture() for _ in range(8)]
    assert (frames[0].width, frames[0].height) == (320, 180)
    # The picture below the stamp follows the file: five levels, then the loop restarts.
    levels = [int(f.to_ndarray()[150, 160]) for f in frames]
    assert levels[:5] == sorted(levels[:5]) and levels[5] == levels[0]
    assert [stamps.read_frame(f).counter for f in frames] == list(range(8))


def test_file_camera_names_a_missing_file(tmp_path):
    with pytest.raises(DeviceUnavailable, match="camera: sim cannot open video file '.*nope.mp4'"):
        open_camera(dataclasses.replace(SMALL, source=str(tmp_path / "nope.mp4")))


def test_closed_camera_refuses_capture_and_tolerates_second_close():
    camera = open_camera(SMALL)
    camera.close()
    camera.close()
    with pytest.raises(DeviceClosed):
        camera.capture()


async def test_sim_camera_has_no_native_h264():
    with open_camera(SMALL) as camera:
        with pytest.raises(UnsupportedControl, match="sim cannot hand out encoded H.264"):
            async for _ in camera.packets():
                pass


def test_v4l2_without_device_names_the_path_and_what_exists():
    profile = CameraProfile(backend="v4l2", device="/dev/video9")
    with pytest.raises(DeviceUnavailable, match=r"v4l2: no camera at '/dev/video9' \(present: "):
        open_camera(profile)


def test_picamera2_absent_says_how_to_install():
    with pytest.raises(DeviceUnavailable, match="picamera2: not installed .*python3-picamera2"):
        open_camera(CameraProfile(backend="picamera2", device="0"))


def test_auto_falls_back_through_every_backend_and_reports_each(caplog):
    with pytest.raises(DeviceUnavailable) as caught:
        open_camera(CameraProfile(backend="auto", device="/dev/video9"))
    message = str(caught.value)
    assert message.startswith("camera: no backend works (picamera2: ")
    assert "v4l2: v4l2: no camera at '/dev/video9'" in message
    assert "camera: falling back from picamera2 to v4l2" in caplog.text


def test_environment_override_beats_the_profile(monkeypatch):
    monkeypatch.setenv("ROOMBOX_CAMERA_BACKEND", "sim")
    with open_camera(dataclasses.replace(SMALL, backend="v4l2", device="/dev/video9")) as camera:
        assert camera.backend == "sim"


def test_real_v4l2_camera_delivers_frames():
    devices = sorted(glob.glob("/dev/video*"))
    require_hardware("a V4L2 camera (/dev/video*)", bool(devices))
    with open_camera(CameraProfile(backend="v4l2", device=devices[0], width=640, height=480)) as camera:
        frames = [camera.capture() for _ in range(10)]
    assert frames[-1].pts > frames[0].pts
