"""Noise floor tracking and a stationary-noise suppressor (fans, HVAC, projector hum).

The noise floor is what remains of a slowly smoothed power spectrum in the gaps between
speech: we track its minimum, letting it fall at once and rise only slowly (3 dB/s), so a
talker holding forth is not taken for noise. The suppressor applies a decision-directed
Wiener gain (Ephraim-Malah style a-priori SNR) with a floor, which keeps the room tone
steady instead of gating it and avoids musical noise.
"""
from __future__ import annotations

import numpy as np

from media.audio.stft import StreamingStft

NOISE_SMOOTHING = 0.9               # per frame, ~100 ms
NOISE_RISE = 10 ** (3 / 10 / 100)   # +3 dB per second at most (per 10 ms frame)
NOISE_WARMUP_FRAMES = 50
DECISION_DIRECTED = 0.98            # weight of the previous frame's clean estimate
# The minimum of a smoothed periodogram sits below the noise's mean; this undoes the bias.
MINIMUM_BIAS = 3.0
FULL_SCALE = 32768.0


class NoiseFloorTracker:
    """Per-bin noise power estimate from a stream of power spectra (one call per frame)."""

    def __init__(self, bins: int, smoothing: float = NOISE_SMOOTHING):
        self.smoothing = smoothing
        self._slow = np.zeros(bins)
        self._warm = np.full(bins, np.inf)
        self.floor = np.zeros(bins)
        self._frames = 0

    def update(self, power: np.ndarray) -> np.ndarray:
        """Add one frame's power spectrum; return the current noise floor."""
        a = self.smoothing
        self._slow = a * self._slow + (1 - a) * power
        self._frames += 1
        if self._frames <= NOISE_WARMUP_FRAMES:
            self._warm = np.minimum(self._warm, self._slow)
            if self._frames == NOISE_WARMUP_FRAMES:
                self.floor = self._warm
        else:
            self.floor = np.minimum(self.floor * NOISE_RISE, np.maximum(self._slow, 1e-20))
        return self.floor


class NoiseSuppressor:
    """Reduces stationary room noise in a mono stream of 10 ms int16 frames.

    ``floor_db`` caps the attenuation (default -15 dB: noise is lowered, not removed, so
    speech onsets are not clipped). Adds one frame of latency. One instance per stream,
    called from one thread.
    """

    def __init__(self, frame_size: int, *, floor_db: float = -15.0):
        self.frame_size = frame_size
        self.gain_floor = 10 ** (floor_db / 20)
        self._stft = StreamingStft(frame_size)
        # Less smoothing than the echo suppressor's tracker: the PSD must reach the floor
        # within the short gaps between syllables; the larger bias is undone below.
        self._tracker = NoiseFloorTracker(frame_size + 1, smoothing=0.7)
        self._clean_prev = np.zeros(frame_size + 1)
        self.noise_dbfs = -120.0

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Return the denoised frame (int16, same length), one frame late."""
        x = np.asarray(frame, dtype=np.float64) / FULL_SCALE
        spec = self._stft.analyse(x)[0]
        power = spec.real ** 2 + spec.imag ** 2
        noise = MINIMUM_BIAS * self._tracker.update(power) + 1e-20
        posterior = power / noise
        prior = (DECISION_DIRECTED * self._clean_prev / noise
                 + (1 - DECISION_DIRECTED) * np.maximum(posterior - 1.0, 0.0))
        gain = np.maximum(prior / (1.0 + prior), self.gain_floor)
        self._clean_prev = gain * gain * power
        # Mean noise power per sample of the windowed frame, as a level in dBFS.
        self.noise_dbfs = float(10 * np.log10(noise.sum() / self.frame_size ** 2 + 1e-20))
        out = self._stft.synthesise(gain * spec)
        return np.clip(np.rint(out * FULL_SCALE), -32768, 32767).astype(np.int16)
