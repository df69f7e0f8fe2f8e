"""A frame stamp that survives H.264: frame counter and capture time as big luma blocks.

The simulated camera writes it into the top-left corner; receivers, tests and benchmarks
read it back to check frame order and measure capture-to-decode latency. Times are
CLOCK_MONOTONIC microseconds, comparable between processes on one machine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

COUNTER_BITS = 32
TIME_BITS = 48
CHECK_BITS = 8
BITS = COUNTER_BITS + TIME_BITS + CHECK_BITS  # 88
COLUMNS = 32
ROWS = -(-BITS // COLUMNS)  # 3
BLACK, WHITE = 16, 235      # video-range luma survives any encoder's range handling


@dataclass(frozen=True)
class Stamp:
    counter: int
    time_us: int

    def age_ms(self, now_us: int | None = None) -> float:
        """Milliseconds since the stamp's capture time, on CLOCK_MONOTONIC."""
        if now_us is None:
            now_us = monotonic_us()
        return (now_us - self.time_us) / 1000.0


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


def block_size(width: int) -> int:
    return max(4, width // (COLUMNS * 2))


def stamp_height(width: int) -> int:
    return block_size(width) * ROWS


def _checksum(counter: int, time_us: int) -> int:
    value = counter ^ time_us ^ (time_us >> 24) ^ 0xA5
    return (value ^ (value >> 8) ^ (value >> 16) ^ (value >> 32)) & 0xFF


def _bits(stamp: Stamp) -> np.ndarray:
    word = ((stamp.counter & 0xFFFFFFFF) << (TIME_BITS + CHECK_BITS)
            | (stamp.time_us & ((1 << TIME_BITS) - 1)) << CHECK_BITS
            | _checksum(stamp.counter & 0xFFFFFFFF, stamp.time_us & ((1 << TIME_BITS) - 1)))
    bits = [(word >> (BITS - 1 - i)) & 1 for i in range(BITS)]
    return np.array(bits + [0] * (ROWS * COLUMNS - BITS), dtype=np.uint8).reshape(ROWS, COLUMNS)


def write(luma: np.ndarray, stamp: Stamp) -> None:
    """Draw ``stamp`` into the top-left of a luma plane (uint8, h x w), in place."""
    size = block_size(luma.shape[1])
    pattern = np.where(_bits(stamp) == 1, WHITE, BLACK).astype(np.uint8)
    luma[: ROWS * size, : COLUMNS * size] = np.kron(pattern, np.ones((size, size), np.uint8))


def write_yuv420(image: np.ndarray, width: int, height: int, stamp: Stamp) -> None:
    """Draw ``stamp`` into a yuv420p image laid out as PyAV's ndarray (h*3/2 rows of w),
    with neutral chroma under it so it shows black and white."""
    write(image[:height], stamp)
    size = block_size(width)
    rows, cols = ROWS * size // 2, COLUMNS * size // 2
    quarter = height // 4
    for plane in (image[height: height + quarter], image[height + quarter: height + 2 * quarter]):
        plane.reshape(height // 2, width // 2)[:rows, :cols] = 128


def read(luma: np.ndarray) -> Stamp | None:
    """Read a stamp back from a (possibly decoded, lossy) luma plane; None if it fails its check."""
    size = block_size(luma.shape[1])
    area = luma[: ROWS * size, : COLUMNS * size].astype(np.float32)
    # Mean of each block's inner half: robust to blocking and ringing at the edges.
    inner = area.reshape(ROWS, size, COLUMNS, size)[:, size // 4: size - size // 4, :, size // 4: size - size // 4]
    means = inner.mean(axis=(1, 3)).reshape(-1)[:BITS]
    word = 0
    for bit in means > (BLACK + WHITE) / 2:
        word = (word << 1) | int(bit)
    check = word & 0xFF
    time_us = (word >> CHECK_BITS) & ((1 << TIME_BITS) - 1)
    counter = word >> (TIME_BITS + CHECK_BITS)
    if _checksum(counter, time_us) != check:
        return None
    return Stamp(counter, time_us)


def read_frame(frame) -> Stamp | None:
    """Read the stamp of an ``av.VideoFrame`` in any format."""
    if frame.format.name not in ("yuv420p", "yuvj420p", "nv12", "gray"):
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : frame.width]
    return read(luma)
