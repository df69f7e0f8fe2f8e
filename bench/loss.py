"""Video under random UDP loss through a real Janus: ours next to stock aiortc 1.16.

    .venv/bin/python bench/loss.py                                   # 0,10,20 %, both legs
    .venv/bin/python bench/loss.py --levels 10 --legs sub --seconds 300 --stacks ours
    .venv/bin/python bench/loss.py --speech                          # + bench/loss_audio.py

Needs root (a network namespace for Janus, nftables for the loss). Each call: loopback
Janus 1.1.2 VideoRoom; a publisher sending the simulated camera (stamped frames); a
subscriber decoding them; both aiortc peers in this process. The call is set up and runs
``--warmup`` seconds without loss, then ``percent`` % of the UDP packets on one leg — the
publisher↔Janus or the Janus↔subscriber port — are dropped at random in both directions
(tests/loss.py: nftables ``numgen random``; this kernel has no netem) for ``--seconds``.

ours  = VideoEncoder (libx264) → VideoSender → … → VideoReceiver (media/video/jitterbuffer.py)
stock = aiortc's own H.264 encoder from raw camera frames → … → aiortc's RemoteStreamTrack

Figures, over 100 ms windows of the measured span at the subscriber: a window is *good*
when a frame shows up in it that is new (a higher stamp counter than any before), fresh
(captured ≤ ``STALE_MS`` ago: the burst of stale frames after a stall does not count) and
intact (its stamp reads and its 8x8-block luma thumbnail is within ``--psnr-db`` of the
frame the camera captured under that counter). frozen/corrupt % = windows not good; also
the longest run of bad windows, good frames per second, and the median capture→decode age.
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/array.py would shadow the standard library's array module (see bench/video.py).
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402
from aiortc.mediastreams import MediaStreamTrack  # noqa: E402

from hal.camera import stamp as stamps  # noqa: E402
from hal.camera.sim import SimCamera  # noqa: E402
from hal.profile import CameraProfile  # noqa: E402
from media.video import VideoConfig, VideoEncoder, VideoReceiver, VideoSender, choose_encoder  # noqa: E402
from media.video.webrtc import h264_codecs  # noqa: E402
from tests import janus as J  # noqa: E402
from tests.loss import clear_udp_loss, dropped_packets, leg_port, set_udp_loss  # noqa: E402

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
    if stack == "ours":
        config = VideoConfig(encoder="libx264", bitrate_bps=BITRATE_BPS, keyframe_interval_s=10,
                             adapt=False)
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
    if stack == "ours":
        receiver = await stack_ctx.enter_async_context(VideoReceiver())
        await J.subscribe(client, room, feed, pc, receiver.attach)
        return receiver.recv, receiver.status
    tracks = []
    await J.subscribe(client, room, feed, pc, lambda r: tracks.append(r.track))
    return tracks[0].recv, lambda: {}


async def call(server: J.JanusServer, stack: str, leg: str, percent: float, seconds: float,
               warmup_s: float, size: str, psnr_db: float) -> dict:
    width, height = SIZES[size]
    camera = await asyncio.to_thread(RecordingCamera, CameraProfile(backend="sim", width=width,
                                                                    height=height, fps=FPS))
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
            port = leg_port(publisher if leg == "pub" else subscriber)
            loss_on = time.monotonic() + warmup_s
            end = loss_on + seconds
            lossy = False
            dropped0 = dropped_packets(server.netns)
            load0 = os.getloadavg()[0]
            while (now := time.monotonic()) < end:
                if not lossy and now >= loss_on:
                    if percent > 0:
                        set_udp_loss(server.netns, percent, port=port)
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
            dropped = dropped_packets(server.netns) - dropped0 if percent > 0 else 0
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


# ---- main ---------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_row(r: dict) -> None:
    usable = r["fps"] >= 15 and r["bad_pct"] <= 5
    print(f"{r['stack']:5} {r['leg']:3} {r['percent']:5.0f} {r['seconds']:5.0f} "
          f"{r['bad_pct']:8.1f} {r['longest_freeze_s']:7.1f} {r['fps']:6.1f} "
          f"{_fmt(r['age_p50_ms'], '7.0f')} {r['corrupt_frames']:7d} {r['dropped']:7d} "
          f"{r['load']:5.1f}  {'yes' if usable else 'no'}", flush=True)


async def main_async(args) -> list[dict]:
    import aioice.ice
    aioice.ice.get_host_addresses = J.only_loopback_addresses
    netns = f"roombox-lossbench-{os.getpid()}"
    J.create_netns(netns)
    server = J.start_janus(netns)
    results = []
    try:
        with J.netns_entered(netns):
            print("stack leg   loss  secs  bad%(fz) longest    fps  p50 ms corrupt dropped  load  usable")
            for percent in args.levels:
                for leg in args.legs:
                    for stack in args.stacks:
                        r = await call(server, stack, leg, percent, args.seconds, args.warmup,
                                       args.size, args.psnr_db)
                        results.append(r)
                        print_row(r)
    finally:
        J.stop_janus(server)
        J.delete_netns(netns)
    return results


async def speech(args, measure_speech) -> list[dict]:
    """Speech columns from bench/loss_audio.py's ``measure_speech`` (it runs its own Janus)."""
    rows = []
    for percent in args.levels:
        for leg in args.legs:
            for stack in args.stacks:
                rows.append(dict(await measure_speech(percent, leg, args.seconds, stack),
                                 stack=stack, leg=leg, percent=percent))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="0,10,20", type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--legs", default="sub,pub", type=lambda s: s.split(","))
    parser.add_argument("--stacks", default="ours,stock", type=lambda s: s.split(","))
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--size", choices=SIZES, default="360p")
    parser.add_argument("--psnr-db", type=float, default=22.0)
    parser.add_argument("--json", help="also write every result (with receiver/sender status) here")
    parser.add_argument("--speech", action="store_true",
                        help="also run bench/loss_audio.py's measure_speech for the same cells")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/loss.py: needs root (network namespace, nftables)")
    print(f"video {args.size}@{FPS} {BITRATE_BPS / 1e6:.1f} Mbit/s start, {args.seconds:.0f} s "
          f"per cell after {args.warmup:.0f} s without loss; load avg at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    results = asyncio.run(main_async(args))
    if args.speech:
        import importlib.util
        spec = importlib.util.spec_from_file_location("bench_loss_audio", BENCH_DIR / "loss_audio.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for row in asyncio.run(speech(args, module.measure_speech)):
            print("speech", json.dumps({k: v for k, v in row.items() if not isinstance(v, (list, dict))}))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
