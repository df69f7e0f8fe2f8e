"""MVDR beam weights with the noise covariance tracked while the talker is absent.

Minimum-variance distortionless response: per frequency bin, the weights that pass a
far-field wave from the steering direction unchanged and minimise everything else, given
the covariance of everything else (noise, reverberation, other talkers). That covariance
is learned from the array itself, frame by frame, weighted by how likely the talker is
absent in that bin:

- Presence probability from the beam's own output (multichannel speech presence after
  Souden et al., IEEE TASLP 2010, for a rank-one talker): the output's a-posteriori SNR
  against the noise the current weights let through, a decision-directed a-priori SNR,
  and a fixed prior of absence.
- The noise covariance starts as a diffuse (spherically isotropic) field at the first
  frame's level, i.e. a superdirective beam, and adapts from there.
- Diagonal loading relative to the covariance's trace, raised per bin until the
  white-noise gain is at least ``WNG_MIN_DB``, so mic self-noise and the gain/phase
  mismatch of real capsules are not blown up at low frequencies, where a small array's
  covariance is nearly singular, into cancelling the talker.
"""
from __future__ import annotations

import numpy as np

from media.audio.doa import SPEED_OF_SOUND_M_S

NOISE_MEMORY = 0.95           # per frame while the talker is absent: ~200 ms of covariance
ABSENCE_PRIOR = 0.5           # prior probability that a bin holds no talker
DECISION_DIRECTED = 0.9       # weight of last frame's talker estimate in the a-priori SNR
INITIAL_LOADING = 1e-2        # of the diffuse model the covariance starts from
MAX_EXPONENT = 50.0           # keeps exp() finite for very loud bins
# Lowest white-noise gain |w^H d|^2 / |w|^2 allowed (delay-and-sum: 10 log10(mics) = 6 dB
# for four). Below it the beam leans on tiny differences between capsules, and real ones
# differ by about a dB in sensitivity: with no limit a ±1 dB spread made the beam take
# 4-7 dB off the talker it points at; -3 dB keeps that under 2 dB (tests/media/audio/
# test_array.py) at the price of ~0.7 dB of the simulated gain (bench/README.md).
WNG_MIN_DB = -3.0
WNG_STEPS = 6                 # loading raised at most this many times per frame
WNG_LOADING_STEP = 4.0        # by this factor each time, only in bins over the limit
FLOOR_SMOOTHING = 0.8         # per frame, of the beam output power the floor follows
FLOOR_RISE = 10 ** (0.05 / 10)  # per frame: +5 dB/s


def diffuse_coherence(positions: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """(bins, mics, mics) coherence of a spherically isotropic field: sinc(2 f d / c)."""
    gap = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=2)
    return np.sinc(2 * freqs[:, None, None] * gap[None] / SPEED_OF_SOUND_M_S)


class NoiseTrackingMvdr:
    """Per-bin MVDR weights for one array; ``beam(spectra, steering)`` once per frame.

    ``positions``: (mics, 3) metres; ``freqs``: bin centre frequencies in Hz;
    ``loading``: diagonal loading as a fraction of the mean mic noise power (higher:
    closer to delay-and-sum, more robust; lower: more gain, more sensitive to mismatch).
    """

    def __init__(self, positions, freqs, loading: float = 0.01):
        self.positions = np.asarray(positions, dtype=np.float64)
        self.loading = loading
        self._coherence = diffuse_coherence(self.positions, np.asarray(freqs, dtype=np.float64))
        self._eye = np.eye(len(self.positions))
        self._max_norm = 10 ** (-WNG_MIN_DB / 10)
        self._noise: np.ndarray | None = None            # (bins, mics, mics)
        self._talker_power = np.zeros(len(freqs))         # last frame's talker estimate per bin
        self._output_power: np.ndarray | None = None      # smoothed |beam|^2 per bin
        self._floor: np.ndarray | None = None             # its slow minimum: noise let through
        self.weights: np.ndarray | None = None           # (mics, bins), applied as sum(w * x)
        self.presence = np.zeros(len(freqs))             # last talker-presence probability

    def beam(self, spectra: np.ndarray, steering: np.ndarray) -> np.ndarray:
        """One frame: ``spectra`` (mics, bins), ``steering`` (mics, bins) -> beam (bins,)."""
        x = spectra.T                                                  # (bins, mics)
        if self._noise is None:
            level = np.mean(np.abs(x) ** 2, axis=1)
            if not level.any():
                self.weights = np.conj(steering) / len(self.positions)
                return np.sum(self.weights * spectra, axis=0)
            self._noise = level[:, None, None] * (self._coherence + INITIAL_LOADING * self._eye)
        d = steering.T                                                 # (bins, mics)
        trace = np.trace(self._noise, axis1=1, axis2=2).real / len(self.positions)
        loading = self.loading * trace + 1e-20
        for _ in range(WNG_STEPS + 1):
            loaded = self._noise + loading[:, None, None] * self._eye
            solved = np.linalg.solve(loaded, d[:, :, None])[:, :, 0]  # R^-1 d
            response = np.real(np.sum(np.conj(d) * solved, axis=1))    # d^H R^-1 d
            w = solved / response[:, None]
            # White-noise gain |w^H d|^2 / |w|^2 = 1 / |w|^2 kept above WNG_MIN: where the
            # weights grow past it, more loading (towards delay-and-sum).
            over = np.sum(np.abs(w) ** 2, axis=1) > self._max_norm
            if not over.any():
                break
            loading = np.where(over, loading * WNG_LOADING_STEP, loading)
        out = np.sum(np.conj(w) * x, axis=1)
        self.weights = np.conj(w).T

        # Talker presence: output SNR against the noise these weights pass. The model says
        # 1 / d^H R^-1 d; the output's floor says what really passes when the model is off
        # (it starts as a diffuse field: in a quiet room white mic noise passes far more),
        # and without the floor a wrong model would never let the covariance learn.
        power = np.abs(out) ** 2
        if self._floor is None:
            self._output_power = power.copy()
            self._floor = power.copy()
        self._output_power = FLOOR_SMOOTHING * self._output_power + (1 - FLOOR_SMOOTHING) * power
        self._floor = np.minimum(self._output_power, self._floor * FLOOR_RISE)
        noise_out = np.maximum(1 / response, self._floor) + 1e-30
        snr_post = power / noise_out
        snr_prior = (DECISION_DIRECTED * self._talker_power / noise_out
                     + (1 - DECISION_DIRECTED) * np.maximum(snr_post - 1, 0))
        exponent = np.minimum(snr_post * snr_prior / (1 + snr_prior), MAX_EXPONENT)
        odds_absent = ABSENCE_PRIOR / (1 - ABSENCE_PRIOR) * (1 + snr_prior) * np.exp(-exponent)
        p = 1 / (1 + odds_absent)
        self.presence = p
        self._talker_power = power * (snr_prior / (1 + snr_prior)) ** 2

        # Learn the noise where the talker is likely absent; keep it where it is present.
        keep = NOISE_MEMORY + (1 - NOISE_MEMORY) * p
        outer = x[:, :, None] * np.conj(x[:, None, :])
        self._noise = keep[:, None, None] * self._noise + (1 - keep)[:, None, None] * outer
        return out
