"""The SoC and GPU encoders on real hardware (hardware-in-the-loop): a Pi 4's V4L2 M2M
encoder, an Intel/AMD GPU through VAAPI or Quick Sync. Here (no such devices) they skip
saying why; with ROOMBOX_HIL=1 on a box that should have one, they fail instead."""
from __future__ import annotations

import asyncio
import glob
import os

import av

from hal.camera import stamp as stamps
from media.video import VideoConfig, VideoEncoder, choose_encoder
from tests.hil import require_hardware
from tests.media.video.test_video_encoder import Recorder, running

WAIT_S = 15


async def encode_request_and_decode(camera, name: str) -> None:
    """Probe ``name`` alone, encode ~1 s, force an IDR, and decode everything elsewhere."""
    config = VideoConfig(encoder=name, keyframe_interval_s=60, keyframe_min_gap_s=0)
    choice = await choose_encoder(camera, config, environ={})
    assert choice.name == name and choice.is_hardware
    encoder = VideoEncoder(camera, config, choice)
    recorder = Recorder(30)
    encoder.add_output(recorder)
    recorder.start()
    async with running(encoder):
        async with asyncio.timeout(WAIT_S):
            await recorder.enough.wait()
            asked = len(recorder.packets)
            encoder.request_keyframe("test")
            recorder.count, recorder.enough = asked + 5, asyncio.Event()
            await recorder.enough.wait()
    assert any(k for _, k in recorder.packets[asked:asked + 3]), "an IDR right after the request"
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p, _ in recorder.packets for f in decoder.decode(av.Packet(bytes(p)))]
    counters = [stamps.read_frame(f).counter for f in frames]
    assert len(frames) >= len(recorder.packets) - 2     # a hardware encoder may hold one back
    assert counters == sorted(set(counters))


async def test_real_v4l2m2m_encoder(camera):
    require_hardware("a V4L2 M2M H.264 encoder (Raspberry Pi 4: /dev/video11)",
                     os.path.exists("/dev/video11"))
    await encode_request_and_decode(camera, "v4l2m2m")


def gpu_drivers() -> set[str]:
    """Drivers of the render nodes (a Pi's v3d has one too, but no video encoder)."""
    drivers = set()
    for node in glob.glob("/sys/class/drm/renderD*/device/driver"):
        drivers.add(os.path.basename(os.readlink(node)))
    return drivers


async def test_real_gpu_encoder(camera):
    codecs = {"h264_vaapi", "h264_qsv"} & av.codecs_available
    require_hardware("an Intel/AMD GPU (i915, xe, amdgpu) and an FFmpeg with h264_vaapi or h264_qsv",
                     bool(gpu_drivers() & {"i915", "xe", "amdgpu", "radeon"}) and bool(codecs))
    await encode_request_and_decode(camera, "vaapi")
