"""The simulated room's acoustics: what the simulated speaker plays reaches the simulated
microphones, delayed and attenuated, as a real loudspeaker's sound reaches a real array.

This makes loop tests (health's chirp), echo cancellation and the demo behave on the `sim`
profile as on a box. One room per process; both sides run in real time, so the echo is
placed by CLOCK_MONOTONIC sample time.
"""
from __future__ import annotations

import threading
import time

import numpy as np

ECHO_DELAY_S = 0.012       # ~1 m of air plus converter latency
ECHO_GAIN = 0.25           # -12 dB: a box speaker a metre from the array
RING_S = 4.0


class SimRoom:
    """A ring of the mono loudspeaker signal indexed by absolute sample time."""

    def __init__(self, sample_rate: int = 48000) -> None:
        self.sample_rate = sample_rate
        self._ring = np.zeros(int(RING_S * sample_rate), dtype=np.float32)
        self._written_until = 0           # absolute sample index one past the last write
        self._lock = threading.Lock()

    def play(self, samples: np.ndarray, rate: int, start_s: float) -> None:
        """The speaker starts emitting int16 ``samples`` (frames, channels) at ``start_s``."""
        mono = samples.astype(np.float32).mean(axis=1) / 32768.0
        if rate != self.sample_rate:
            mono = _resample(mono, rate, self.sample_rate)
        start = round(start_s * self.sample_rate)
        with self._lock:
            self._clear(self._written_until, start)
            index = (start + np.arange(len(mono))) % len(self._ring)
            self._ring[index] = mono
            self._written_until = max(self._written_until, start + len(mono))

    def echo(self, count: int, rate: int, start_s: float) -> np.ndarray:
        """What the microphones hear of the speaker for ``count`` samples from ``start_s``."""
        n = count if rate == self.sample_rate else round(count * self.sample_rate / rate)
        first = round((start_s - ECHO_DELAY_S) * self.sample_rate)
        with self._lock:
            self._clear(self._written_until, first + n)
            out = self._ring[(first + np.arange(n)) % len(self._ring)].copy()
        if rate != self.sample_rate:
            out = _resample(out, self.sample_rate, rate)[:count]
        return out * ECHO_GAIN

    def _clear(self, begin: int, end: int) -> None:
        """Silence between the last write and ``end``: nothing was played there."""
        if end <= begin:
            return
        span = min(end - begin, len(self._ring))
        self._ring[(end - span + np.arange(span)) % len(self._ring)] = 0.0
        self._written_until = max(self._written_until, end)


def _resample(signal: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    target = np.arange(round(len(signal) * target_rate / source_rate)) * source_rate / target_rate
    return np.interp(target, np.arange(len(signal)), signal).astype(np.float32)


_room = SimRoom()


def room() -> SimRoom:
    return _room


def now_s() -> float:
    return time.monotonic()
