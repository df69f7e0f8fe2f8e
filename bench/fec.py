"""What the in-band video FEC costs in CPU: the sender's packing and the receiver's jitter
buffer, with and without parity, on the same libx264 frames (same run, medians).

    .venv/bin/python bench/fec.py                      # 720p30 at 1.5 Mbit/s, 10 % planned loss
    .venv/bin/python bench/fec.py --size 360p --bitrate 600000 --loss 0.2

Per frame: ``pack`` = aiortc's packer alone vs ``ProtectedH264Packer`` (parity for the
previous frame included); ``receive`` = every packet of the frame through
``MarkerJitterBuffer.add`` (aiortc's depayload included), no loss, then with 10 % random
loss (parity rebuilding what it can). Overhead = parity bytes / picture bytes.
"""
from __future__ import annotations

import sys
from pathlib import Path

# bench/array.py would shadow the standard library's array module (see bench/video.py).
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
sys.path.insert(0, str(BENCH_DIR.parent))

import argparse  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from fractions import Fraction  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiortc.codecs import depayload, get_capabilities  # noqa: E402
from aiortc.codecs.h264 import H264Encoder  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpCodecParameters  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

from media.video.fec_stream import ProtectedH264Packer  # noqa: E402
from media.video.jitterbuffer import MarkerJitterBuffer  # noqa: E402

SIZES = {"360p": (640, 360), "720p": (1280, 720)}
CODEC = next(c for c in get_capabilities("video").codecs if c.mimeType == "video/H264")
PARAMS = RTCRtpCodecParameters(mimeType=CODEC.mimeType, clockRate=CODEC.clockRate, payloadType=102)


def encode(width: int, height: int, frames: int, bitrate: int) -> list[av.Packet]:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.bit_rate = bitrate
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "g": "60"}
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 255, (height * 3 // 16 + 1, width // 8 + 1), dtype=np.uint8)
    texture = texture.repeat(8, 0).repeat(8, 1)[:height * 3 // 2, :width]
    out = []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.roll(texture, 4 * i, axis=1), format="yuv420p")
        frame.pts = i
        out.extend(ctx.encode(frame))
    for packet in out:
        packet.time_base = Fraction(1, 30)
    return out


def pack_all(packer: H264Encoder, frames: list[av.Packet]) -> tuple[list[list[bytes]], list[float]]:
    payloads, times = [], []
    for packet in frames:
        start = time.perf_counter()
        out, _ = packer.pack(packet)
        times.append(time.perf_counter() - start)
        payloads.append(out)
    return payloads, times


def receive_all(frames: list[list[bytes]], loss: float, seed: int) -> tuple[list[float], int]:
    clock = [0.0]
    released = []
    buffer = MarkerJitterBuffer(lambda data, ts, key: released.append(ts), 0.25, lambda: clock[0])
    rng = random.Random(seed)
    times, seq = [], 1000
    for index, payloads in enumerate(frames):
        clock[0] += 1 / 30
        start = time.perf_counter()
        for j, payload in enumerate(payloads):
            if rng.random() >= loss:
                packet = RtpPacket(payload_type=102, sequence_number=seq & 0xFFFF, timestamp=3000 * index,
                                   marker=int(j == len(payloads) - 1), ssrc=1, payload=payload)
                packet._data = depayload(PARAMS, payload)
                buffer.add(packet)
            seq += 1
        buffer.poll()
        times.append(time.perf_counter() - start)
    return times, len(released)


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):6.3f} / {1000 * sorted(values)[int(0.95 * (len(values) - 1))]:6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="720p")
    parser.add_argument("--bitrate", type=int, default=1_500_000)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--loss", type=float, default=0.1, help="loss the parity is planned for")
    args = parser.parse_args()
    frames = encode(*SIZES[args.size], args.frames, args.bitrate)
    plain, plain_pack = pack_all(H264Encoder(), frames)
    packer = ProtectedH264Packer(args.loss)
    protected, fec_pack = pack_all(packer, frames)
    print(f"{args.size} {args.bitrate / 1e6:.1f} Mbit/s, {len(frames)} frames, parity planned for "
          f"{args.loss:.0%} loss: overhead {packer.parity_bytes / packer.data_bytes:.0%} of picture bytes, "
          f"{packer.parity_packets / len(frames):.1f} parity packets a frame")
    print("per frame, ms (median / p95)        plain            with FEC")
    print(f"pack (sender)                  {ms(plain_pack)}   {ms(fec_pack)}")
    for loss in (0.0, 0.1):
        plain_rx, plain_frames = receive_all(plain, loss, 7)
        fec_rx, fec_frames = receive_all(protected, loss, 7)
        print(f"receive, {loss:4.0%} loss, no NACK   {ms(plain_rx)}   {ms(fec_rx)}   "
              f"frames released {plain_frames} / {fec_frames} of {len(frames)}")


if __name__ == "__main__":
    main()
