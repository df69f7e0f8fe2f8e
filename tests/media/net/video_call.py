"""One video call through a real Janus with random UDP loss on one leg, measured at the
subscriber: the harness behind bench/loss.py and the loss tests.

``call()``: loopback Janus VideoRoom; a publisher sending the simulated camera (stamped
frames); a subscriber decoding them; both aiortc peers in this process, inside Janus's
network namespace. The call runs ``warmup_s`` without loss, then ``percent`` % of the UDP
packets on one leg — the publisher↔Janus or the Janus↔subscriber port — are dropped at
random in both directions (tests/loss.py) for ``seconds``.

ours  = VideoEncoder (libx264) → VideoSender → … → VideoReceiver (media/video/jitterbuffer.py)
stock = aiortc's own H.264 encoder from raw camera frames → … → aiortc's RemoteStreamTrack

``score()``, over 100 ms windows of the lossy span: a window is *good* when a frame shows up
in it that is new (a higher stamp counter than any before), fresh (captured ≤ ``STALE_MS``
ago: the burst of stale frames after a stall does not count) and intact (its stamp reads and
its 8x8-block luma thumbnail is within ``psnr_db`` of the frame the camera captured under
that counter); a window with a corrupt picture is bad. ``bad_pct`` = frozen-or-corrupt
windows; also the longest run of bad windows, good frames per second, the median
capture→decode age.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import statistics
import time

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from hal.camera import stamp as stamps
from hal.camera.sim import SimCamera
from hal.profile import CameraProfile
from media.video import VideoConfig, VideoEncoder, VideoReceiver, VideoSender, choose_encoder
from media.video.webrtc import h264_codecs
from tests import janus as J
from tests.loss import clear_udp_loss, dropped_packets, leg_port, set_udp_loss

SIZES = {"240p": (320, 240), "360p": (640, 360), "720p": (1280, 720)}
FPS = 30
WINDOW_S = 0.1
STALE_MS = 400.0
BLOCK = 8
RECV_TIMEOUT_S = 1.0
REFERENCES_KEPT = 600          # 20 s of camera frames
BITRATE_BPS = 1_000_000        # aiortc's own H.264 default, so both stacks start equal
_rooms = itertools.count(5100)


def thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """8x8-block means of the luma below the stamp: cheap, and blind to coding noise but
    not to a smeared or misplaced picture."""
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :frame.width]
    top = -(-stamps.stamp_height(frame.width) // BLOCK) * BLOCK
    h, w = (luma.shape[0] - top) // BLOCK * BLOCK, luma.shape[1] // BLOCK * BLOCK
    area = luma[top:top + h, :w].astype(np.float32)
    return area.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)


class RecordingCamera(SimCamera):
    """The simulated camera, keeping a thumbnail of each frame under its stamp counter."""

    def __init__(self, profile: CameraProfile) -> None:
        super().__init__(profile)
        self.references: dict[int, np.ndarray] = {}

    def _capture(self) -> av.VideoFrame:
        counter = self._counter
        frame = super()._capture()
        self.references[counter] = thumbnail(frame)
        self.references.pop(counter - REFERENCES_KEPT, None)
        return frame


class CameraTrack(MediaStreamTrack):
    """Raw camera frames for aiortc to encode itself (the stock publisher)."""

    kind = "video"

    def __init__(self, camera: SimCamera) -> None:
        super().__init__()
        self._camera = camera

    async def recv(self) -> av.VideoFrame:
        return await asyncio.to_thread(self._camera.capture)


# ---- one call ---------------------------------------------------------------------------

def fec_options(stack: str) -> dict:
    """Video config for a stack name: "ours" (defaults), "ours-nofec" (in-band FEC off),
    "ours-fec20" (FEC planned for at least 20 % loss)."""
    variant = stack.removeprefix("ours").removeprefix("-")
    if not variant:
        return {}
    if variant == "nofec":
        return {"fec": False}
    if variant.startswith("fec") and variant[3:].isdigit():
        return {"fec_min_loss_pct": float(variant[3:])}
    raise ValueError(f"stack {stack!r}: expected ours, ours-nofec or ours-fecNN")


async def _owned_task(ctx: contextlib.AsyncExitStack, coro) -> asyncio.Task:
    """A task that ``ctx`` cancels and awaits on exit."""
    task = asyncio.create_task(coro)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    ctx.push_async_callback(stop)
    return task


async def _publish(stack: str, camera: RecordingCamera, client: J.JanusClient, room: int,
                   pc: RTCPeerConnection, ctx: contextlib.AsyncExitStack) -> tuple[int, dict]:
    """Start the publisher; returns the feed id and a dict its status lands in."""
    if stack.startswith("ours"):
        config = VideoConfig(encoder="libx264", bitrate_bps=BITRATE_BPS, keyframe_interval_s=10,
                             adapt=False, **fec_options(stack))
        encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
        await _owned_task(ctx, encoder.run())
        sender = VideoSender(encoder, adapt=False)
        sender.attach(pc)
        feed = await J.publish(client, room, pc)
        sender.check_negotiated(pc)
        return feed, {"status": sender.status}
    transceiver = pc.addTransceiver(CameraTrack(camera), direction="sendonly")
    transceiver.setCodecPreferences(h264_codecs())
    feed = await J.publish(client, room, pc)
    return feed, {"status": lambda: {}}


async def _frames(stack: str, client, room, feed, pc, stack_ctx: contextlib.AsyncExitStack):
    """Subscribe; returns (async frame getter, status getter)."""
    if stack.startswith("ours"):
        receiver = await stack_ctx.enter_async_context(VideoReceiver())
        await J.subscribe(client, room, feed, pc, receiver.attach)
        return receiver.recv, receiver.status
    tracks = []
    await J.subscribe(client, room, feed, pc, lambda r: tracks.append(r.track))
    return tracks[0].recv, lambda: {}


async def stamped_camera(size: str) -> RecordingCamera:
    """The simulated camera both loss benches publish (opened off the event loop)."""
    width, height = SIZES[size]
    return await asyncio.to_thread(RecordingCamera, CameraProfile(backend="sim", width=width,
                                                                  height=height, fps=FPS))


async def call(server: J.JanusServer, stack: str, leg: str, percent: float, seconds: float,
               warmup_s: float, size: str, psnr_db: float, capacity_kbps: float | None = None) -> dict:
    """One call; ``capacity_kbps`` also puts a bottleneck of that rate on what the ``leg``'s
    peer sends (``pub``: the publisher's uplink, congestion our rate control must find)."""
    camera = await stamped_camera(size)
    client = J.JanusClient(server.url)
    room = next(_rooms)
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    events: list[tuple[float, int | None, float, float]] = []   # (t, counter, psnr, age_ms)
    try:
        async with client.session(), contextlib.AsyncExitStack() as ctx:
            await J.create_room(client, room)
            feed, pub = await _publish(stack, camera, client, room, publisher, ctx)
            recv, sub_status = await _frames(stack, client, room, feed, subscriber, ctx)
            port = ((leg_port(publisher), leg_port(subscriber)) if leg == "both"
                    else leg_port(publisher if leg == "pub" else subscriber))
            loss_on = time.monotonic() + warmup_s
            end = loss_on + seconds
            lossy = False
            dropped0 = dropped_packets(server.netns)
            load0 = os.getloadavg()[0]
            while (now := time.monotonic()) < end:
                if not lossy and now >= loss_on:
                    if percent > 0 or capacity_kbps:
                        set_udp_loss(server.netns, percent, port=port, capacity_kbps=capacity_kbps)
                    lossy = True
                try:
                    async with asyncio.timeout(RECV_TIMEOUT_S):
                        frame = await recv()
                except TimeoutError:
                    continue
                if not lossy:
                    continue
                t = time.monotonic()
                stamp = stamps.read_frame(frame)
                if stamp is None:
                    events.append((t, None, 0.0, 0.0))
                    continue
                reference = camera.references.get(stamp.counter)
                quality = psnr(thumbnail(frame), reference) if reference is not None else 0.0
                events.append((t, stamp.counter, quality, stamp.age_ms()))
            dropped = dropped_packets(server.netns) - dropped0 if percent > 0 or capacity_kbps else 0
            clear_udp_loss(server.netns)
            receiver_status, sender_status = sub_status(), pub["status"]()
    finally:
        clear_udp_loss(server.netns)
        for pc in (publisher, subscriber):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await pc.close()
        camera.close()
    result = score(events, loss_on, end, psnr_db)
    result.update(stack=stack, leg=leg, percent=percent, seconds=seconds, dropped=dropped,
                  load=round((load0 + os.getloadavg()[0]) / 2, 2),
                  receiver=receiver_status, sender=sender_status)
    return result


def score(events, start: float, end: float, psnr_db: float) -> dict:
    windows = max(1, int((end - start) / WINDOW_S))
    good = [False] * windows
    newest = -1
    good_frames, ages, corrupt = 0, [], 0
    for t, counter, quality, age in events:
        index = int((t - start) / WINDOW_S)
        if counter is None or quality < psnr_db:
            corrupt += 1
            if 0 <= index < windows:
                good[index] = False
            continue
        if counter <= newest:
            continue
        newest = counter
        if age > STALE_MS:
            continue
        good_frames += 1
        ages.append(age)
        if 0 <= index < windows:
            good[index] = True
    # A window stays bad if a corrupt picture showed in it, even next to a good one.
    for t, counter, quality, _ in events:
        index = int((t - start) / WINDOW_S)
        if 0 <= index < windows and (counter is None or quality < psnr_db):
            good[index] = False
    longest = run = 0
    for ok in good:
        run = 0 if ok else run + 1
        longest = max(longest, run)
    return {"bad_pct": 100 * good.count(False) / windows, "longest_freeze_s": longest * WINDOW_S,
            "fps": good_frames / (end - start), "corrupt_frames": corrupt,
            "age_p50_ms": statistics.median(ages) if ages else None,
            "psnr_min": min((q for _, c, q, _ in events if c is not None), default=None)}
