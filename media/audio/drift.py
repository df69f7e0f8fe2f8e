"""Clock-drift compensation: resample the loudspeaker reference onto the microphone's clock.

When playback and capture run on different crystals (HDMI or USB speaker, USB mic), the
echo slides along the reference by up to ~1 sample per second at 100 ppm. An adaptive
filter chasing that motion never settles at high frequencies. Instead we delay the
reference by a slowly varying fractional amount ``delay`` (samples) that follows the
measured drift, so the echo path seen by the filter stays still.

The drift itself is measured from the adaptive filter (see ``measure_shift``): the phase
slope between two snapshots of the learned echo path is the time by which the echo moved.
That closes a loop: measured motion -> rate correction -> less motion.
"""
from __future__ import annotations

import numpy as np

TAPS = 16            # windowed-sinc interpolator length
PHASES = 256         # fractional positions in the table: error < 1/512 sample
MAX_RATE = 300e-6    # beyond any crystal pair we expect (ppm-level clocks)
SHIFT_BAND_HZ = 4000.0  # drift is measured from the echo path below this


def _sinc_table() -> np.ndarray:
    """Rows: fractional offsets 0..1; columns: taps for samples n-TAPS/2+1 .. n+TAPS/2."""
    frac = np.arange(PHASES + 1)[:, None] / PHASES
    k = np.arange(-TAPS // 2 + 1, TAPS // 2 + 1)[None, :]
    t = k - frac
    window = np.kaiser(TAPS + 1, 8.0)
    # Kaiser window evaluated at the (fractional) tap positions by interpolation.
    w = np.interp(t + TAPS / 2, np.arange(TAPS + 1), window)
    table = np.sinc(t) * w
    return table / table.sum(axis=1, keepdims=True)


_TABLE = _sinc_table()


class DriftCompensator:
    """Fractional delay line on the reference whose delay follows a drift ``rate``.

    ``history`` samples of raw reference are kept so the filter's input history can be
    regenerated after a whole-block re-centring. ``delay`` starts at ``initial_delay``
    and is kept within one block of it by ``recentre()`` steps, reported to the caller.
    """

    def __init__(self, block: int, history: int, headroom: int):
        self.block = block
        self.min_delay = TAPS / 2 + 1
        # Start just ``headroom`` samples above the smallest delay the interpolator allows
        # (the caller delays the mic by as much): a larger start would make a short
        # acoustic path (speaker next to the mic) non-causal for the filter.
        self.initial_delay = self.min_delay + headroom
        self.delay = self.initial_delay
        self.rate = 0.0                   # delay change per sample (positive: echo arrives later)
        self._raw = np.zeros(history + block + TAPS + 2 * block)
        # Row i: the TAPS raw samples starting at i (a view: _raw is only changed in place).
        self._windows = np.lib.stride_tricks.sliding_window_view(self._raw, TAPS)

    def push(self, ref: np.ndarray) -> np.ndarray:
        """Append one raw block; return the block resampled onto the mic clock."""
        n = self.block
        self._raw[:-n] = self._raw[n:]
        self._raw[-n:] = ref
        delays = self.delay + self.rate * np.arange(1, n + 1)
        self.delay = float(delays[-1])
        return self._read(delays, 0)

    def _read(self, delays: np.ndarray, blocks_back: int) -> np.ndarray:
        n = self.block
        end = len(self._raw) - blocks_back * n
        pos = (end - n + np.arange(n)) - delays          # fractional read positions
        base = np.floor(pos).astype(int)
        frac = pos - base
        phase = np.rint(frac * PHASES).astype(int)
        return np.einsum("ij,ij->i", self._windows[base - (TAPS // 2 - 1)], _TABLE[phase])

    def recentre_needed(self) -> int:
        """+1 if the delay grew past a block above its start, -1 if it fell below; else 0."""
        if self.delay >= self.initial_delay + self.block:
            return 1
        if self.delay < self.min_delay:
            return -1
        return 0

    def recentre(self, direction: int, blocks: int) -> np.ndarray:
        """Move the delay one block back toward its start; return the last ``blocks`` + 1
        resampled blocks (oldest first) recomputed with the new delay, for the filter."""
        self.delay -= direction * self.block
        const = np.full(self.block, self.delay)
        return np.stack([self._read(const, b) for b in range(blocks, -1, -1)])

    def adjust_rate(self, delta: float) -> None:
        self.rate = float(np.clip(self.rate + delta, -MAX_RATE, MAX_RATE))


def measure_shift(before: np.ndarray, after: np.ndarray, block: int,
                  sample_rate: int = 16000) -> tuple[float, float]:
    """Samples by which the echo path moved later between two filter snapshots, and a
    confidence 0..1 (coherence of the two snapshots).

    Uses bins below ``SHIFT_BAND_HZ`` (half the Nyquist frequency at 16 kHz) so a shift up
    to 125 µs stays unambiguous in phase, and the same band at 48 kHz: above it a
    wideband far end (speech codecs, 16 kHz calls played at 48 kHz) leaves the reference
    empty, the filter learns nothing coherent there and those bins would only lower the
    confidence below ``DRIFT_MIN_CONFIDENCE``, so the drift would never be corrected.
    """
    cross = np.einsum("pk,pk->k", after, np.conj(before))
    top = min(block // 2, int(round(SHIFT_BAND_HZ * 2 * block / sample_rate)))
    bins = np.arange(1, top)
    c = cross[bins]
    weight = np.abs(c)
    norm = np.sqrt(np.sum(np.abs(after[:, bins]) ** 2) * np.sum(np.abs(before[:, bins]) ** 2))
    if norm <= 0:
        return 0.0, 0.0
    confidence = float(weight.sum() / norm)
    omega = np.pi * bins / block           # rad per sample for a 2*block-point transform
    phi = np.angle(c)
    shift = -float(np.sum(weight * phi * omega) / (np.sum(weight * omega * omega) + 1e-30))
    return shift, confidence
