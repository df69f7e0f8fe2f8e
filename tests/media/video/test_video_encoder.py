"""Encoder chain and encoder: fallback order with unavailable hardware, keyframes on request,
bitrate steering, and output that a separate decoder decodes with frame counters intact."""
from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
from fractions import Fraction

import av
import pytest

from hal.camera import Camera
from hal.camera import stamp as stamps
from hal.profile import CameraProfile
from media.video import (AnnexBFileOutput, EncodedOutput, NoEncoderAvailable, VideoConfig,
                         VideoConfigError, VideoEncoder, choose_encoder, encoders, live_vbv)
from media.video.chain import ENV_OVERRIDE, ORDER, candidates
from media.video.config import Rung
from media.video.errors import EncoderUnavailable
from media.video.encoder import FORCED_KEYFRAME_BURST

WAIT_S = 15


class Recorder(EncodedOutput):
    """Keeps what it is given; sets ``enough`` after ``count`` packets."""

    def __init__(self, count: int) -> None:
        super().__init__("recorder")
        self.packets: list[tuple[av.Packet, bool]] = []
        self.count = count
        self.enough = asyncio.Event()

    def _deliver(self, packet, keyframe):
        self.packets.append((packet, keyframe))
        if len(self.packets) >= self.count:
            self.enough.set()


@contextlib.asynccontextmanager
async def running(encoder: VideoEncoder):
    task = asyncio.create_task(encoder.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_probing_falls_back_in_order_and_status_says_why(camera, caplog):
    caplog.set_level(logging.WARNING, "roombox.media.video")
    choice = await choose_encoder(camera, VideoConfig(), environ={})
    assert choice.name == "libx264"
    status = choice.status()
    # Every better backend was tried first, in the documented order, each with its reason.
    assert list(status["rejected"]) == list(ORDER[:-1])
    assert "h264_v4l2m2m" in status["rejected"]["v4l2m2m"]
    assert "cannot hand out encoded H.264" in status["rejected"]["camera"]
    assert status["hardware"] is False and "probing" in status["reason"]
    logged = [r.getMessage() for r in caplog.records]
    assert any("v4l2m2m unavailable" in m and "trying the next" in m for m in logged)


async def test_hardware_probe_failures_name_the_devices_this_machine_has(camera, caplog):
    caplog.set_level(logging.WARNING, "roombox.media.video")
    choice = await choose_encoder(camera, VideoConfig(), environ={})
    rejected = choice.status()["rejected"]
    checked = 0
    for name, pattern in (("v4l2m2m", "/dev/video*"), ("vaapi", "/dev/dri/renderD*")):
        if name not in rejected:      # it worked (a Pi 4, a VAAPI-enabled FFmpeg): nothing to explain
            assert choice.is_hardware
            continue
        devices = glob.glob(pattern)
        if devices:
            assert all(os.path.basename(d) in rejected[name] for d in devices), rejected[name]
        else:
            assert rejected[name].endswith(f"no {pattern} device on this machine"), rejected[name]
        assert rejected[name] in caplog.text       # the log says the same as status
        checked += 1
    if "vaapi" in rejected:
        # The GPU slot tries FFmpeg's VAAPI encoder, then Intel's Quick Sync where this
        # FFmpeg has it (PyAV's wheels do), and says why each failed.
        tried = [c for c in ("h264_vaapi", "h264_qsv") if c == "h264_vaapi" or c in av.codecs_available]
        assert all(c in rejected["vaapi"] for c in tried), rejected["vaapi"]
    assert checked or choice.name in ("v4l2m2m", "vaapi")


async def test_forced_hardware_encoder_that_is_absent_fails_with_its_reason(camera):
    with pytest.raises(NoEncoderAvailable, match="v4l2m2m: .*h264_v4l2m2m"):
        await choose_encoder(camera, VideoConfig(encoder="v4l2m2m"), environ={})


def test_environment_override_orders_candidates_and_rejects_unknown_names():
    assert candidates(VideoConfig(), {ENV_OVERRIDE: "v4l2m2m,libx264"}) == (
        ["v4l2m2m", "libx264"], f"{ENV_OVERRIDE}=v4l2m2m,libx264")
    assert candidates(VideoConfig(encoder="libx264"), {})[0] == ["libx264"]
    with pytest.raises(EncoderUnavailable, match="'nvenc'.*expected a comma-separated list"):
        candidates(VideoConfig(), {ENV_OVERRIDE: "nvenc"})


def test_config_errors_name_key_value_and_expectation():
    with pytest.raises(VideoConfigError, match="video.encoder must be one of .*got 'x265'"):
        VideoConfig.from_table({"encoder": "x265"})
    with pytest.raises(VideoConfigError, match="video.bitrat: unknown key"):
        VideoConfig.from_table({"bitrat": 1})
    with pytest.raises(VideoConfigError, match="bitrate_bps must lie between"):
        VideoConfig.from_table({"bitrate_bps": 9_000_000})
    with pytest.raises(VideoConfigError, match="ladder entries must look like '1280x720@30', got '720p'"):
        VideoConfig.from_table({"ladder": ["720p"]})
    config = VideoConfig.from_table({"keyframe_interval_s": 1, "ladder": ["1280x720@30", "640x360@15"]})
    assert [str(r) for r in config.rungs(1280, 720, 30)] == ["1280x720@30", "640x360@15"]


async def test_output_decodes_in_a_separate_decoder_with_frame_counters_intact(camera, tmp_path):
    choice = await choose_encoder(camera, VideoConfig(encoder="libx264"), environ={})
    encoder = VideoEncoder(camera, VideoConfig(encoder="libx264"), choice)
    recording = AnnexBFileOutput(tmp_path / "out.h264")
    recorder = Recorder(45)
    for output in (recording, recorder):
        encoder.add_output(output)
        output.start()
    async with running(encoder):
        async with asyncio.timeout(WAIT_S):
            await recorder.enough.wait()
    recording.stop()
    assert recorder.packets[0][1] is True, "outputs start at a keyframe"
    with av.open(str(tmp_path / "out.h264"), format="h264") as container:
        decoded = [stamps.read_frame(f) for f in container.decode(video=0)]
    counters = [s.counter for s in decoded if s is not None]
    assert len(decoded) == recording.packets_written >= 45
    assert len(counters) == len(decoded), "every decoded frame's stamp reads back"
    assert counters == sorted(set(counters)), "frames in capture order, none repeated"
    # The camera may drop a frame when the shared machine stalls, but not many.
    assert counters[-1] - counters[0] + 1 - len(counters) <= 3


async def test_keyframe_request_makes_the_next_frame_an_idr_and_gaps_are_rate_limited(camera):
    config = VideoConfig(encoder="libx264", keyframe_interval_s=60, keyframe_min_gap_s=0.2)
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    recorder = Recorder(10)
    encoder.add_output(recorder)
    recorder.start()
    async with running(encoder):
        async with asyncio.timeout(WAIT_S):
            await recorder.enough.wait()
            assert sum(k for _, k in recorder.packets) == 1, "only the starting keyframe so far"
            before = len(recorder.packets)
            encoder.request_keyframe("test")
            encoder.request_keyframe("test again")   # merged with the first
            recorder.count = before + 3
            recorder.enough.clear()
            await recorder.enough.wait()
    after = [k for _, k in recorder.packets[before:]]
    assert after[0] is True, "the frame right after the request is an IDR"
    assert after[1:].count(True) == 0, "two requests within the gap give one keyframe"
    assert encoder.forced_keyframes == 2   # the start and the request
    assert encoder.status()["last_keyframe_reason"] == "test"


async def test_forced_keyframes_take_at_most_half_the_rate_at_a_low_target(camera):
    """Behind a congested link viewers keep asking for keyframes; at 150 kbit/s a keyframe
    costs most of a second of the budget. A call's start and one viewer joining are served
    at once; further requests no faster than the budget pays for them (x264's VBV holds a
    keyframe to about half a second of the rate, so at half the rate about a second)."""
    config = VideoConfig(encoder="libx264", bitrate_bps=150_000, min_bitrate_bps=150_000,
                         keyframe_interval_s=60, keyframe_min_gap_s=0.2)
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    recorder = Recorder(1)
    encoder.add_output(recorder)           # the output's start: the first forced keyframe
    recorder.start()

    async def keyframes(count: int) -> None:
        while sum(k for _, k in recorder.packets) < count:
            recorder.count = len(recorder.packets) + 1
            recorder.enough.clear()
            await recorder.enough.wait()

    async with running(encoder):
        async with asyncio.timeout(WAIT_S):
            await keyframes(1)
            encoder.request_keyframe("viewer joined")
            await keyframes(2)
            cost_s = encoder.keyframe_cost_s()
            assert cost_s > 0.15, encoder.last_keyframe_bytes
            encoder.request_keyframe("PLI")
            await keyframes(3)
    first, second, third = [p for p, k in recorder.packets if k][:3]
    assert (second.pts - first.pts) / 90000 <= 0.5, "the burst: a joining viewer is served at once"
    waited_s = (third.pts - first.pts) / 90000
    assert waited_s >= 0.8 * FORCED_KEYFRAME_BURST * cost_s, (waited_s, cost_s)
    assert waited_s <= FORCED_KEYFRAME_BURST * cost_s + 0.5, "and served once the budget allows"


async def rate_after_change(camera, start_bps: int, new_bps: int) -> tuple[float, float, list]:
    """Bit/s an encoder started at ``start_bps`` (cap at the default maximum, 2.5 Mbit/s)
    sends over its frames 15-45, then over frames 75-105 after being told ``new_bps``."""
    config = VideoConfig(encoder="libx264", bitrate_bps=start_bps, keyframe_interval_s=60)
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    recorder = Recorder(45)
    encoder.add_output(recorder)
    recorder.start()
    async with running(encoder):
        async with asyncio.timeout(WAIT_S):
            await recorder.enough.wait()
            assert encoder.set_target_bitrate(new_bps) == new_bps
            recorder.count = 105
            recorder.enough.clear()
            await recorder.enough.wait()
    before = sum(p.size for p, _ in recorder.packets[15:45]) * 8
    after = sum(p.size for p, _ in recorder.packets[75:105]) * 8
    return before, after, recorder.packets


async def test_target_bitrate_steers_libx264_live(camera):
    """Congestion control is only as good as the encoder's obedience: told 150 kbit/s after
    1 Mbit/s, x264 is there within a second (it had stayed at several times that when its
    VBV cap sat at the call's maximum), without a keyframe."""
    before, after, packets = await rate_after_change(camera, 1_000_000, 150_000)
    assert after <= 1.25 * 150_000, f"{after / 1000:.0f} kbit/s sent for 150"
    assert after < 0.5 * before, (before, after)
    assert not any(k for _, k in packets[1:]), "a live rate change needs no keyframe"
    config = VideoConfig(encoder="libx264", bitrate_bps=1_000_000)
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    assert encoder.set_target_bitrate(100_000) == 150_000, "clamped to min_bitrate_bps"


async def test_without_a_live_vbv_a_big_rate_change_reopens_the_encoder(camera, monkeypatch):
    """A PyAV whose context cannot be reached (``live_vbv`` finds no libavcodec): x264 is
    reopened at the new rate instead, which costs one keyframe but keeps the rate."""
    monkeypatch.setattr(live_vbv, "_libraries", lambda: None)
    before, after, packets = await rate_after_change(camera, 1_000_000, 150_000)
    assert after <= 1.25 * 150_000, f"{after / 1000:.0f} kbit/s sent for 150"
    assert sum(k for _, k in packets[1:]) == 1, "one keyframe: the reopened encoder's first"


class H264Camera(Camera):
    """The lowest seam for a camera that encodes H.264 itself (a UVC camera's packets()):
    real H.264 made by libx264 beforehand, handed out packet by packet."""

    backend = "uvc-h264-fake"

    def __init__(self, packets: list[av.Packet]) -> None:
        super().__init__(CameraProfile(backend="sim", width=320, height=240, fps=30))
        self._packets = packets

    async def packets(self, bitrate_bps=None, gop_frames=None):
        for packet in self._packets:
            yield packet


def encode_stamped(camera, count: int) -> list[av.Packet]:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = camera.width, camera.height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 90000), Fraction(30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    frames = [camera.capture() for _ in range(count)]
    return [p for f in frames for p in encoder.encode(f)] + list(encoder.encode(None))


async def test_camera_encoded_h264_is_chosen_first_and_passed_through_untouched(camera):
    made = await asyncio.to_thread(encode_stamped, camera, 20)
    native = H264Camera(made)
    choice = await choose_encoder(native, VideoConfig(), environ={})
    assert choice.name == "camera" and choice.is_hardware and choice.attempts == []
    encoder = VideoEncoder(native, VideoConfig(), choice)
    recorder = Recorder(len(made))
    encoder.add_output(recorder)
    recorder.start()
    await asyncio.wait_for(encoder.run(), WAIT_S)
    assert [bytes(p) for p, _ in recorder.packets] == [bytes(p) for p in made]
    decoder = av.CodecContext.create("h264", "r")
    counters = [stamps.read_frame(f).counter for p, _ in recorder.packets for f in decoder.decode(p)]
    assert counters == list(range(counters[0], counters[0] + len(counters))) and len(counters) >= 19
    # A UVC camera's encoder cannot be steered: status says so instead of pretending.
    assert encoder.status()["camera_controls"] == {"keyframe": False}


async def test_output_started_mid_stream_gets_a_keyframe_at_once_and_nothing_before(camera):
    config = VideoConfig(encoder="libx264", keyframe_interval_s=60)
    encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
    first, late = Recorder(10), Recorder(5)
    encoder.add_output(first)
    first.start()
    async with running(encoder):
        async with asyncio.timeout(WAIT_S):
            await first.enough.wait()
            late.start()                       # not yet added: it must not see anything
            encoder.add_output(late)
            before = encoder.frames_encoded
            await late.enough.wait()
    assert late.packets[0][1] is True, "a late output starts at a keyframe"
    assert late.packets_dropped <= 1, "at most the frame already in the encoder went unused"
    assert sum(k for _, k in late.packets) == 1
    assert encoder.frames_encoded - before <= 7, "the keyframe came at once, not at the 60 s GOP"


async def test_keyframes_in_a_row_at_a_starved_rate_leave_the_picture_readable(camera, monkeypatch):
    """A viewer joining and another's PLI right after, at 60 kbit/s: with x264's quantiser
    free to reach 51 the second keyframe drained the VBV and the next pictures were a smear
    whose stamp could not be read. Capped at ``X264_QP_MAX`` every picture stays readable,
    and the keyframes are visibly paid for: larger than the uncapped encoder's from the
    very same frames (same input, so the difference is the cap's)."""
    frames = [await asyncio.to_thread(camera.capture) for _ in range(75)]

    def encode(qp_max: int) -> tuple[int, list[int]]:
        monkeypatch.setattr(encoders, "X264_QP_MAX", qp_max)
        backend = encoders.Libx264Encoder()
        backend.open(Rung(camera.width, camera.height, 30), 60_000, 2_500_000, gop_frames=3000)
        decoder = av.CodecContext.create("h264", "r")
        unreadable, keyframe_sizes = 0, []
        for index, frame in enumerate(frames):
            for packet in backend.encode(frame, keyframe=index in (0, 30, 32)):
                if packet.is_keyframe:
                    keyframe_sizes.append(packet.size)
                unreadable += sum(stamps.read_frame(p) is None for p in decoder.decode(packet))
        return unreadable, keyframe_sizes

    unreadable, capped = encode(encoders.X264_QP_MAX)
    _, free = encode(51)
    assert unreadable == 0, f"{unreadable} unreadable pictures at QP max {encoders.X264_QP_MAX}"
    assert len(capped) == len(free) == 3
    assert sum(capped[1:]) > sum(free[1:]), (capped, free)
