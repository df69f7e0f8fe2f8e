"""Video benchmark: publisher CPU, stamp→decoded latency through a real Janus, late join.

    .venv/bin/python bench/video.py                       # 720p30; as root (network namespace)
    .venv/bin/python bench/video.py --sizes 720p,1080p --seconds 30

(a) CPU per frame of our path — Camera.frames() → VideoEncoder (libx264 on its thread) →
    EncodedVideoTrack → aiortc's H.264 packetiser — against bare PyAV encoding of the same
    frames with the same encoder settings. The frames are captured from the simulated camera
    beforehand and replayed at the camera's rate, so the simulation's pattern drawing is not
    counted on either side.
(b) Our publisher → Janus VideoRoom (loopback, own network namespace) → our subscriber
    (a separate process, marker-bit receiver): stamp→decoded latency p50/p95/p99, delivered
    fps, frames lost; publisher CPU (process CPU / wall time), also without the simulated
    camera's own drawing cost (measured separately, it stands in for a sensor's DMA).
(c) Late subscribers: time from the subscriber's join request to its first decoded picture.
"""
from __future__ import annotations

import sys
from pathlib import Path

# Python puts this script's directory first on sys.path, where bench/array.py would shadow
# the standard library's array module for every library imported below: use the repository
# root instead.
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import av  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection  # noqa: E402
from aiortc.codecs.h264 import H264Encoder as AiortcH264Packer  # noqa: E402

from hal.camera import Camera, open_camera  # noqa: E402
from hal.camera import stamp as stamps  # noqa: E402
from hal.profile import CameraProfile  # noqa: E402
from media.video import (VideoConfig, VideoEncoder, VideoReceiver, VideoSender,  # noqa: E402
                         choose_encoder)
from media.video.encoders import Libx264Encoder  # noqa: E402
# The Janus set-up is shared with the tests (one place knows how to run it on loopback).
from tests import janus as J  # noqa: E402
from bench.chromium_sub import chromium_binary, chromium_subscriber  # noqa: E402

SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30
ROOM = 1000
SUBSCRIBER_TIMEOUT_S = 120   # beyond the measuring time
FREEZE_MS = 200              # a gap between decoded frames a viewer sees as a freeze
ROUNDS = 3
CONFIG = VideoConfig(encoder="libx264", bitrate_bps=2_500_000, max_bitrate_bps=4_000_000,
                     keyframe_interval_s=10, adapt=False)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# ---- (a) CPU ratio ---------------------------------------------------------------------

class ReplayCamera(Camera):
    """Replays pre-captured frames at the profile's rate through hal's Camera machinery."""

    backend = "replay"

    def __init__(self, profile: CameraProfile, frames: list[av.VideoFrame]) -> None:
        super().__init__(profile)
        self._frames = frames
        self._index = 0
        self._next = time.monotonic()

    def _capture(self) -> av.VideoFrame:
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + 1 / self.fps, time.monotonic() - 1 / self.fps)
        frame = self._frames[self._index % len(self._frames)]
        self._index += 1
        frame.pts = self._pts_now()
        return frame


def capture_frames(width: int, height: int, count: int) -> tuple[list[av.VideoFrame], float]:
    """Frames from the simulated camera, and its CPU per frame (pattern + stamp drawing)."""
    profile = CameraProfile(backend="sim", width=width, height=height, fps=FPS)
    with open_camera(profile) as camera:
        frames, cpu = [], 0.0
        for _ in range(count):
            started = time.thread_time()
            frames.append(camera.capture())
            cpu += time.thread_time() - started
    return frames, cpu / count


def bare_pyav_cpu_per_frame(frames: list[av.VideoFrame], width: int, height: int,
                            paced: bool) -> float:
    """libx264 through PyAV alone, same settings. Paced: one frame per 1/FPS s, as a live
    encoder runs (x264's slice threads then sleep and wake every frame, which costs ~1 ms
    per 720p frame here); unpaced: back to back, as a batch encode."""
    backend = Libx264Encoder(CONFIG.x264_preset)
    backend.open(CONFIG.rungs(width, height, FPS)[0], CONFIG.bitrate_bps, CONFIG.max_bitrate_bps,
                 round(CONFIG.keyframe_interval_s * FPS))
    started, due = time.process_time(), time.monotonic()
    for i, frame in enumerate(frames):
        if paced:
            time.sleep(max(0.0, due - time.monotonic()))
            due += 1 / FPS
        frame.pts = i * 3000
        backend.encode(frame, keyframe=False)
    return (time.process_time() - started) / len(frames)


async def our_path_cpu_per_frame(frames: list[av.VideoFrame], width: int, height: int,
                                 seconds: float) -> tuple[float, int]:
    camera = ReplayCamera(CameraProfile(backend="sim", width=width, height=height, fps=FPS), frames)
    encoder = VideoEncoder(camera, CONFIG, await choose_encoder(camera, CONFIG, environ={}))
    sender = VideoSender(encoder, adapt=False)
    track = sender.track
    encoder.add_output(track)
    track.start()
    packer = AiortcH264Packer()
    rtp_packets = 0

    async def packetise() -> None:
        nonlocal rtp_packets
        while True:
            payloads, _ = packer.pack(await track.recv())
            rtp_packets += len(payloads)

    async with asyncio.TaskGroup() as tasks:
        run = tasks.create_task(encoder.run())
        pack = tasks.create_task(packetise())
        await asyncio.sleep(1.0)                       # warm-up: first keyframe, thread start
        cpu0, frames0 = time.process_time(), encoder.frames_encoded
        await asyncio.sleep(seconds)
        cpu, count = time.process_time() - cpu0, encoder.frames_encoded - frames0
        run.cancel()
        pack.cancel()
    camera.close()
    return cpu / max(1, count), rtp_packets


# ---- (b, c) through Janus ----------------------------------------------------------------

async def subscriber_main(url: str, room: int, feed: int, seconds: float) -> dict:
    """Runs in its own process inside Janus's namespace; prints one JSON line of results."""
    import aioice.ice
    aioice.ice.get_host_addresses = J.only_loopback_addresses
    client = J.JanusClient(url)
    ages, counters, arrivals = [], [], []
    async with client.session():
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            async with VideoReceiver() as receiver:
                joined = time.monotonic()
                await J.subscribe(client, room, feed, pc, receiver.attach)
                async with asyncio.timeout(10):
                    first = await receiver.recv()
                first_picture_s = time.monotonic() - joined
                started = time.monotonic()
                frame = first
                while time.monotonic() - started < seconds:
                    arrivals.append(time.monotonic())
                    stamp = stamps.read_frame(frame)
                    if stamp is not None:
                        ages.append(stamp.age_ms())
                        counters.append(stamp.counter)
                    async with asyncio.timeout(5):
                        frame = await receiver.recv()
                elapsed = time.monotonic() - started
                status = receiver.status()
        finally:
            await pc.close()
    gaps_ms = [1000 * (b - a) for a, b in zip(arrivals, arrivals[1:])]
    per_second = [0] * (int(elapsed) or 1)
    for t in arrivals:
        if int(t - started) < len(per_second):
            per_second[int(t - started)] += 1
    return {"first_picture_s": first_picture_s, "ages_ms": ages, "frames": len(counters),
            "fps": len(counters) / elapsed, "max_gap_ms": max(gaps_ms, default=0.0),
            "freezes": sum(g > FREEZE_MS for g in gaps_ms), "min_fps_1s": min(per_second),
            "lost": (counters[-1] - counters[0] + 1 - len(counters)) if counters else None,
            "unreadable": status["released"] - len(counters), "receiver": status}


def run_subscriber(server: J.JanusServer, feed: int, seconds: float) -> dict:
    out = subprocess.run(["ip", "netns", "exec", server.netns, sys.executable, __file__,
                          "--subscriber", server.url, str(ROOM), str(feed), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + SUBSCRIBER_TIMEOUT_S)
    if out.returncode != 0:
        raise RuntimeError(f"subscriber failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def through_janus(server: J.JanusServer, width: int, height: int, seconds: float,
                        late_joins: int, playout_delay_ms: int) -> dict:
    import aioice.ice
    aioice.ice.get_host_addresses = J.only_loopback_addresses
    camera = await asyncio.to_thread(open_camera, CameraProfile(backend="sim", width=width,
                                                                height=height, fps=FPS))
    encoder = VideoEncoder(camera, CONFIG, await choose_encoder(camera, CONFIG, environ={}))
    client = J.JanusClient(server.url)
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    async with client.session(), asyncio.TaskGroup() as tasks:
        run = tasks.create_task(encoder.run())
        try:
            await J.create_room(client, ROOM, playout_delay_ext=True)
            sender = VideoSender(encoder, adapt=False)
            sender.attach(publisher)
            feed = await J.publish(client, ROOM, publisher)
            sender.check_negotiated(publisher)
            await asyncio.sleep(2.0)  # publisher steady before anyone subscribes
            cpu0, wall0, frames0 = time.process_time(), time.monotonic(), encoder.frames_encoded
            steady = await asyncio.to_thread(run_subscriber, server, feed, seconds)
            cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
            encoded_fps = (encoder.frames_encoded - frames0) / (time.monotonic() - wall0)
            late = [(await asyncio.to_thread(run_subscriber, server, feed, 1.0))["first_picture_s"]
                    for _ in range(late_joins)]
            browser = None
            if chromium_binary():
                cpu0, wall0 = time.process_time(), time.monotonic()
                browser = await asyncio.to_thread(run_chromium, server, feed, seconds, playout_delay_ms)
                browser["publisher_cpu"] = (time.process_time() - cpu0) / (time.monotonic() - wall0)
            stats = {"steady": steady, "publisher_cpu": cpu, "encoded_fps": encoded_fps,
                     "late_first_picture_s": late, "chromium": browser, "encoder": encoder.status(),
                     "camera_dropped": camera.status()["dropped"],
                     "sender": sender.status()}
        finally:
            run.cancel()
            await publisher.close()
    camera.close()
    return stats


# ---- (b') headless Chromium as the subscriber ---------------------------------------------

async def chromium_main(url: str, room: int, feed: int, seconds: float,
                        playout_delay_ms: int | None) -> dict:
    """Runs inside Janus's namespace: bench/chromium_sub.py's subscriber, first-picture time."""
    client = J.JanusClient(url)
    async with client.session():
        handle = await client.attach()
        measured = await chromium_subscriber(client, handle, room, feed, seconds, playout_delay_ms)
    if measured["first_presented_us"] is None:
        raise RuntimeError(f"chromium presented no frame in {seconds + 10:.0f} s: {measured['stats']}")
    first_s = (measured.pop("first_presented_us") - measured["offset_us"]) / 1e6
    measured["first_picture_s"] = first_s - measured["joined_monotonic"]
    return measured


def run_chromium(server: J.JanusServer, feed: int, seconds: float, playout_delay_ms: int) -> dict:
    out = subprocess.run(["ip", "netns", "exec", server.netns, sys.executable, __file__,
                          "--chromium", server.url, str(ROOM), str(feed), str(seconds),
                          str(playout_delay_ms)],
                         capture_output=True, text=True, timeout=seconds + SUBSCRIBER_TIMEOUT_S)
    if out.returncode != 0:
        raise RuntimeError(f"chromium subscriber failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- main ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="720p", help="comma-separated: 360p, 720p, 1080p")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per size")
    parser.add_argument("--late-joins", type=int, default=5)
    parser.add_argument("--no-janus", action="store_true", help="only (a), no root needed")
    parser.add_argument("--playout-delay-ms", type=int, default=0,
                        help="Chromium subscriber: min=max playout delay Janus asks for; -1: none")
    parser.add_argument("--subscriber", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--chromium", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        url, room, feed, seconds = args.subscriber
        print(json.dumps(asyncio.run(subscriber_main(url, int(room), int(feed), float(seconds)))))
        return
    if args.chromium:
        url, room, feed, seconds, delay = args.chromium
        print(json.dumps(asyncio.run(chromium_main(url, int(room), int(feed), float(seconds),
                                                   None if int(delay) < 0 else int(delay)))))
        return
    if not args.no_janus and os.geteuid() != 0:
        raise SystemExit("video bench: (b) and (c) need root for a network namespace; use --no-janus")
    rows = []
    for size in args.sizes.split(","):
        width, height = SIZES[size]
        frames, sim_cpu = capture_frames(width, height, 150)
        # Interleaved rounds, medians: the machine is shared, and load drifts over a minute.
        batch = bare_pyav_cpu_per_frame(frames, width, height, paced=False)
        bares, ours = [], []
        for _ in range(ROUNDS):
            bares.append(bare_pyav_cpu_per_frame(frames, width, height, paced=True))
            ours.append(asyncio.run(our_path_cpu_per_frame(frames, width, height, len(frames) / FPS))[0])
        bare, mine = statistics.median(bares), statistics.median(ours)
        row = {"size": f"{size}{FPS}", "bare_ms": bare * 1000, "batch_ms": batch * 1000,
               "ours_ms": mine * 1000, "ratio": mine / bare, "sim_camera_ms": sim_cpu * 1000,
               "ratios": [o / b for o, b in zip(ours, bares)]}
        if not args.no_janus:
            netns = f"roombox-bench-{os.getpid()}"
            J.create_netns(netns)
            try:
                server = J.start_janus(netns)
                try:
                    with J.netns_entered(netns):
                        row["janus"] = asyncio.run(through_janus(server, width, height, args.seconds,
                                                                 args.late_joins, args.playout_delay_ms))
                finally:
                    J.stop_janus(server)
            finally:
                J.delete_netns(netns)
        rows.append(row)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\nload average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
          + f" on {os.cpu_count()} CPUs (a shared machine: other work shifts the tails)")
    print("\n(a) CPU per frame, capture → encode → packetise vs bare PyAV libx264 (same frames)")
    print(f"{'size':<9}{'bare paced ms':>14}{'bare batch ms':>14}{'ours ms':>9}{'ratio':>7}"
          f"{'ours % core':>13}")
    for r in rows:
        print(f"{r['size']:<9}{r['bare_ms']:>14.2f}{r['batch_ms']:>14.2f}{r['ours_ms']:>9.2f}"
              f"{r['ratio']:>7.2f}{r['ours_ms'] * FPS / 10:>12.1f}%   rounds: "
              + ", ".join(f"{x:.2f}" for x in r["ratios"]))
    janus_rows = [r for r in rows if "janus" in r]
    if not janus_rows:
        return
    print("\n(b) publisher → Janus → our subscriber, stamp → decoded (ms)")
    print(f"{'size':<9}{'p50':>6}{'p95':>7}{'p99':>7}{'fps':>6}{'lost':>6}"
          f"{'pub CPU':>9}{'w/o sim cam':>13}")
    for r in janus_rows:
        j, s = r["janus"], r["janus"]["steady"]
        ages = s["ages_ms"]
        cpu = j["publisher_cpu"] * 100
        print(f"{r['size']:<9}{pct(ages, 50):>6.1f}{pct(ages, 95):>7.1f}{pct(ages, 99):>7.1f}"
              f"{s['fps']:>6.1f}{s['lost']:>6}{cpu:>8.1f}%"
              f"{cpu - r['sim_camera_ms'] * FPS / 10:>12.1f}%")
    print(f"\nsteadiness over the (b) run: longest gap between decoded frames, gaps > {FREEZE_MS} ms,"
          " fewest frames in any whole second, frames the publisher skipped")
    for r in janus_rows:
        s, e = r["janus"]["steady"], r["janus"]["encoder"]
        print(f"{r['size']:<9}max gap {s['max_gap_ms']:.0f} ms  freezes {s['freezes']}  "
              f"min fps {s['min_fps_1s']}  encoder skipped {e['frames_skipped']} of {e['frames_in']}"
              f"  camera dropped {r['janus']['camera_dropped']}")
    browser_rows = [r for r in janus_rows if r["janus"]["chromium"]]
    if browser_rows:
        print("\n(b') publisher → Janus → headless Chromium, stamp → presented (ms)")
        print(f"{'size':<9}{'p50':>6}{'p95':>7}{'p99':>7}{'fps':>6}{'lost':>6}{'pub CPU':>9}{'first pic s':>13}")
        for r in browser_rows:
            b = r["janus"]["chromium"]
            ages = b["ages_ms"]
            print(f"{r['size']:<9}{pct(ages, 50):>6.1f}{pct(ages, 95):>7.1f}{pct(ages, 99):>7.1f}"
                  f"{b['fps']:>6.1f}{b['lost']:>6}{b['publisher_cpu'] * 100:>8.1f}%{b['first_picture_s']:>13.3f}")
    else:
        print("\n(b') skipped: no chromium binary (apt-get install chromium)")
    print("\n(c) late subscriber: join request → first decoded picture (s)")
    for r in janus_rows:
        late = r["janus"]["late_first_picture_s"]
        print(f"{r['size']:<9}median {statistics.median(late):.3f}  max {max(late):.3f}  "
              f"({', '.join(f'{x:.3f}' for x in late)})")
    for r in janus_rows:
        print(f"\n{r['size']} encoder status: {json.dumps(r['janus']['encoder'], default=str)}")
        print(f"{r['size']} sender status: {json.dumps(r['janus']['sender'], default=str)}")


if __name__ == "__main__":
    main()
