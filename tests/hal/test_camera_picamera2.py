"""picamera2's hardware H.264 encoder behind ``Camera.packets()``: against the stand-in in
fake_picamera2.py (held to picamera2's real calls, listed there), whose output is real H.264
that a separate decoder must decode with the stamped frame counters intact; and on a real
Pi 4 when ROOMBOX_HIL=1."""
from __future__ import annotations

import asyncio
import contextlib
import os

import av
import pytest

from hal.camera import TIME_BASE, open_camera
from hal.camera import stamp as stamps
from hal.errors import DeviceUnavailable, UnsupportedControl
from hal.profile import CameraProfile
from tests.hal.fake_picamera2 import NAL_PPS, NAL_SPS, Platform, fake_picamera2  # noqa: F401
from tests.hil import require_hardware

PROFILE = CameraProfile(backend="picamera2", device="0", width=320, height=240, fps=30)
WAIT_S = 10


def nal_types(data: bytes) -> list[int]:
    return [n[0] & 0x1F for n in data.split(b"\x00\x00\x00\x01") if n]


def decode(packets: list[av.Packet]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("h264", "r")
    return [f for p in packets for f in decoder.decode(av.Packet(bytes(p)))]


def counters(frames: list[av.VideoFrame]) -> list[int]:
    return [stamps.read_frame(f).counter for f in frames]


@contextlib.asynccontextmanager
async def encoded(camera, **settings):
    packets = camera.packets(**settings)
    try:
        yield packets
    finally:
        await packets.aclose()


async def take(packets, count: int) -> list[av.Packet]:
    async with asyncio.timeout(WAIT_S):
        return [await anext(packets) for _ in range(count)]


async def test_packets_are_annex_b_h264_that_decodes_with_counters_intact(fake_picamera2):
    camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        async with encoded(camera, bitrate_bps=400_000, gop_frames=10) as packets:
            got = await take(packets, 25)
            status = camera.status()["encoder"]
    finally:
        camera.close()
    encoder = fake_picamera2.encoders[0]
    # What we asked picamera2 for: SPS/PPS repeated, our IDR spacing and rate, a profile
    # every browser decodes.
    assert (encoder.repeat, encoder.iperiod, encoder.bitrate, encoder.profile) == (
        True, 10, 400_000, "constrained baseline")
    assert got[0].is_keyframe and nal_types(bytes(got[0]))[:2] == [NAL_SPS, NAL_PPS]
    assert all(p.time_base == TIME_BASE for p in got)
    pts = [p.pts for p in got]
    assert pts == sorted(set(pts))
    assert 20 / 30 < float((pts[-1] - pts[0]) * TIME_BASE) < 3     # 24 frame intervals
    frames = decode(got)
    assert len(frames) == 25
    numbers = counters(frames)
    assert numbers == list(range(numbers[0], numbers[0] + 25))
    assert status["packets"] >= 25 and status["dropped"] == 0
    # Closing the iterator stopped picamera2's encoder.
    assert not encoder.running and not fake_picamera2.Picamera2.instances[0]._encoders


async def test_a_late_joiner_decodes_from_any_periodic_keyframe(fake_picamera2):
    async with asyncio.timeout(WAIT_S):
        camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        async with encoded(camera, bitrate_bps=300_000, gop_frames=5) as packets:
            got = await take(packets, 16)
    finally:
        camera.close()
    keyframes = [i for i, p in enumerate(got) if p.is_keyframe]
    assert keyframes[:4] == [0, 5, 10, 15]
    # A decoder that starts at the third IDR has everything it needs in the stream.
    assert nal_types(bytes(got[10]))[:2] == [NAL_SPS, NAL_PPS]
    assert len(decode(got[10:])) == 6


async def test_keyframe_request_makes_the_next_frames_an_idr(fake_picamera2):
    camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        async with encoded(camera, bitrate_bps=300_000, gop_frames=300) as packets:
            await take(packets, 3)
            camera.request_keyframe()
            after = await take(packets, 4)
            camera.request_keyframe()
            camera.request_keyframe()     # two requests, two IDRs (picamera2 counts them)
            later = await take(packets, 8)
    finally:
        camera.close()
    # picamera2 sets FORCE_KEY_FRAME before it queues the next camera buffer: a frame
    # already encoded when we asked may still be a P frame, one after it is the IDR.
    assert [p.is_keyframe for p in after].count(True) == 1 and any(p.is_keyframe for p in after[:3])
    assert [p.is_keyframe for p in later].count(True) == 2
    assert fake_picamera2.encoders[0].idr_frames == 4     # the first frame, then three forced


async def test_bitrate_changes_live_through_the_encoders_v4l2_control(fake_picamera2):
    fake_picamera2.accept_live_bitrate()
    camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        async with encoded(camera, bitrate_bps=1_500_000, gop_frames=300) as packets:
            high = (await take(packets, 45))[15:]
            assert await asyncio.to_thread(camera.set_bitrate, 150_000) is True
            await take(packets, 45)        # rate control settles
            low = await take(packets, 30)
            status = camera.status()["encoder"]
    finally:
        camera.close()
    assert status["live_bitrate_changes"] == 1 and status["restarts"] == 0
    assert not any(p.is_keyframe for p in low)          # no restart, no IDR
    size = lambda ps: sum(p.size for p in ps if not p.is_keyframe)  # noqa: E731
    assert size(low) < size(high) / 3, f"{size(high)} bytes at 1.5 Mbit/s, {size(low)} at 150 kbit/s"


async def test_bitrate_restarts_the_encoder_where_the_driver_refuses_live_changes(fake_picamera2):
    camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        async with encoded(camera, bitrate_bps=1_000_000, gop_frames=300) as packets:
            before = await take(packets, 5)
            # The stand-in device refuses the ioctl (ENOTTY), as a driver without live
            # rate control would: without restart nothing changes.
            assert await asyncio.to_thread(camera.set_bitrate, 200_000) is False
            assert await asyncio.to_thread(camera.set_bitrate, 200_000, True) is True
            after = await take(packets, 10)
            status = camera.status()["encoder"]
    finally:
        camera.close()
    encoder = fake_picamera2.encoders[0]
    assert (encoder.starts, encoder.bitrate, status["restarts"]) == (2, 200_000, 1)
    stream = before + after
    # The restart begins with an IDR carrying SPS/PPS; pts keep rising across it although
    # picamera2's timestamps restart at zero; everything decodes in one decoder.
    restart = next(i for i, p in enumerate(after) if p.is_keyframe)
    assert nal_types(bytes(after[restart]))[:2] == [NAL_SPS, NAL_PPS]
    pts = [p.pts for p in stream]
    assert pts == sorted(set(pts))
    assert len(decode(stream)) == len(stream)


async def test_a_pi_5_has_no_hardware_encoder(fake_picamera2):
    fake_picamera2.platform = Platform.PISP
    camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        with pytest.raises(UnsupportedControl, match="no hardware H.264 encoder \\(Pi 5\\)"):
            async with encoded(camera) as packets:
                await take(packets, 1)
    finally:
        camera.close()
    assert fake_picamera2.encoders == []     # picamera2's software H264Encoder never made


async def test_an_encoder_that_will_not_start_names_the_reason(fake_picamera2):
    fake_picamera2.H264Encoder.start_error = FileNotFoundError(2, "No such file or directory", "/dev/video11")
    camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        with pytest.raises(DeviceUnavailable, match="encoder would not start .*/dev/video11"):
            async with encoded(camera) as packets:
                await take(packets, 1)
        # The camera still delivers frames for our own encoders.
        frame = await asyncio.to_thread(camera.capture)
    finally:
        camera.close()
    assert stamps.read_frame(frame) is not None


async def test_closing_the_camera_ends_the_packet_stream(fake_picamera2):
    camera = await asyncio.to_thread(open_camera, PROFILE)
    packets = camera.packets()
    await take(packets, 2)
    await asyncio.to_thread(camera.close)
    async with asyncio.timeout(WAIT_S):
        rest = [p async for p in packets]      # ends instead of waiting forever
    assert len(rest) < 10
    assert not fake_picamera2.encoders[0].running
    assert not fake_picamera2.Picamera2.instances[0].is_open


async def test_keyframe_and_bitrate_controls_need_a_running_encoder(fake_picamera2):
    camera = await asyncio.to_thread(open_camera, PROFILE)
    try:
        camera.request_keyframe()          # harmless: a starting encoder begins with an IDR
        with pytest.raises(UnsupportedControl, match="no encoder running"):
            camera.set_bitrate(500_000)
    finally:
        camera.close()


async def test_real_pi_hardware_encoder():
    """On a Raspberry Pi 4 with a CSI camera: real H.264 from the VideoCore, decoded."""
    present = os.path.exists("/dev/video11")
    try:
        from picamera2 import Picamera2
        from picamera2.platform import Platform as RealPlatform, get_platform
        present = present and bool(Picamera2.global_camera_info()) and get_platform() == RealPlatform.VC4
    except ImportError:
        present = False
    require_hardware("picamera2 with a CSI camera and the Pi 4 hardware encoder (/dev/video11)", present)
    profile = CameraProfile(backend="picamera2", device="0", width=1280, height=720, fps=30)
    camera = await asyncio.to_thread(open_camera, profile)
    try:
        async with encoded(camera, bitrate_bps=2_000_000, gop_frames=60) as packets:
            first = await take(packets, 10)
            camera.request_keyframe()
            forced = await take(packets, 3)
            applied = await asyncio.to_thread(camera.set_bitrate, 800_000, True)
            after = await take(packets, 30)
    finally:
        camera.close()
    assert first[0].is_keyframe and nal_types(bytes(first[0]))[:2] == [NAL_SPS, NAL_PPS]
    assert any(p.is_keyframe for p in forced)
    assert applied
    frames = decode(first + forced + after)
    assert len(frames) == len(first + forced + after)
    assert (frames[0].width, frames[0].height) == (1280, 720)
