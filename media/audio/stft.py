"""Streaming short-time Fourier transform with perfect reconstruction, one hop per call.

sqrt-Hann analysis and synthesis windows over two frames with a one-frame hop: their
product sums to one across overlaps, so an unmodified spectrum comes back sample-exact,
one frame late. Shared by the suppressors and the beamformer.
"""
from __future__ import annotations

import numpy as np


def sqrt_hann(length: int) -> np.ndarray:
    """Periodic sqrt-Hann window; squared copies at half-length hops sum to 1."""
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length))


class StreamingStft:
    """Analysis of ``channels`` signals and overlap-add synthesis of one, ``hop`` at a time."""

    def __init__(self, hop: int, channels: int = 1):
        self.hop = hop
        self.window = sqrt_hann(2 * hop)
        self._frames = np.zeros((channels, 2 * hop))   # the previous frame, then this one
        self._overlap = np.zeros(hop)

    def analyse(self, frame: np.ndarray) -> np.ndarray:
        """Spectra (channels, hop + 1) of the last two frames; ``frame`` is (channels, hop)."""
        both = self._frames
        both[:, : self.hop] = both[:, self.hop:]
        both[:, self.hop:] = frame
        return np.fft.rfft(both * self.window, axis=1)

    def synthesise(self, spectrum: np.ndarray) -> np.ndarray:
        """One frame of output (``hop`` samples, one frame late) from a modified spectrum."""
        block = np.fft.irfft(spectrum) * self.window
        out = self._overlap + block[: self.hop]
        self._overlap = block[self.hop:]
        return out
