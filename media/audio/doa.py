"""Direction of arrival for a microphone array: SRP-PHAT over an azimuth grid.

For every pair of mics the cross-power spectrum is whitened (PHAT: only phase is kept, so
loud low frequencies do not dominate and reverberation smears less) and averaged over a
few frames. The steered response power of each candidate azimuth is the sum over pairs
and bins of that phase, rotated by the delay a far-field source at that azimuth would
cause between the pair. The best azimuth wins; its margin over the average gives a
confidence.

Spatial aliasing: above c / (2 d) a pair of mics d apart sees phase wrap within the
azimuth range, so its high bins vote for ghost bearings too. On a line array every pair
shares one axis and the short pairs settle the long pairs' ghosts; on a planar array
(the circular ReSpeaker-style ones) ghosts of differently oriented pairs can add up
elsewhere on the circle and win in a reverberant room (bench/array.py: circular 4-mic,
T60 0.4 s, median error 32.9 -> under 10 degrees). So a planar array's pair only counts
bins up to ``PLANAR_ALIAS_MARGIN`` times its aliasing frequency.

Geometry: mic positions (x, y, z) in metres from the array centre (the profile's
``microphone.geometry``). Azimuth in degrees, counter-clockwise seen from above: 0 = +x,
90 = +y. The array is assumed horizontal and the talker near its plane.
"""
from __future__ import annotations

import numpy as np

SPEED_OF_SOUND_M_S = 343.0
GRID_STEP_DEG = 2.0
SPECTRUM_SMOOTHING = 0.8      # per frame: ~50 ms of cross-spectra averaged
MIN_FREQUENCY_HZ = 200.0      # below: too little phase difference across a small array
MAX_FREQUENCY_HZ = 7000.0
PLANAR_ALIAS_MARGIN = 4 / 3    # of c / (2 d): a little aliasing still sharpens the peak


class SrpPhatLocator:
    """Estimates the azimuth of the dominant sound from multi-channel spectra.

    ``update(spectra)`` takes (channels, bins) spectra of one frame (a 2*hop-point rfft)
    and returns (azimuth_deg, confidence 0..1). Only call it on frames that carry the
    talker (the caller gates on level); the last estimate is kept in ``azimuth_deg``.
    """

    def __init__(self, geometry, sample_rate: int, fft_size: int):
        positions = np.asarray(geometry, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) < 2:
            raise ValueError(f"doa: geometry must list (x, y, z) for 2 or more mics, "
                             f"got {np.asarray(geometry).shape}")
        self.channels = len(positions)
        self.pairs = [(i, j) for i in range(self.channels) for j in range(i + 1, self.channels)]
        freqs = np.arange(fft_size // 2 + 1) * sample_rate / fft_size
        self._bins = np.nonzero((freqs >= MIN_FREQUENCY_HZ) & (freqs <= MAX_FREQUENCY_HZ))[0]
        self.azimuths = np.arange(0.0, 360.0, GRID_STEP_DEG)
        rad = np.deg2rad(self.azimuths)
        towards = np.stack([np.cos(rad), np.sin(rad), np.zeros_like(rad)], axis=1)
        baselines = np.array([positions[i] - positions[j] for i, j in self.pairs])
        # A mic nearer the source hears it earlier: arrival t_i = -r_i.u / c.
        tdoa = -(towards @ baselines.T) / SPEED_OF_SOUND_M_S           # (azimuths, pairs)
        omega = 2 * np.pi * freqs[self._bins]
        steering = np.exp(1j * omega[None, None, :] * tdoa[:, :, None])
        if not _collinear(positions):
            spacing = np.linalg.norm(baselines, axis=1)
            limit = PLANAR_ALIAS_MARGIN * SPEED_OF_SOUND_M_S / (2 * spacing)
            steering = steering * (freqs[self._bins][None, :] <= limit[:, None])[None]
        steering = steering.reshape(len(tdoa), -1)
        # Real and imaginary parts apart: Re(S.C) as two matrix-vector products (BLAS).
        self._steer_re = np.ascontiguousarray(steering.real)
        self._steer_im = np.ascontiguousarray(steering.imag)
        self._cross = np.zeros((len(self.pairs), len(self._bins)), dtype=complex)
        self.azimuth_deg: float | None = None
        self.confidence = 0.0

    def update(self, spectra: np.ndarray) -> tuple[float | None, float]:
        x = spectra[:, self._bins]
        left = np.array([x[i] for i, _ in self.pairs])
        right = np.array([x[j] for _, j in self.pairs])
        cross = left * np.conj(right)
        cross /= np.abs(cross) + 1e-20
        s = SPECTRUM_SMOOTHING
        self._cross = s * self._cross + (1 - s) * cross
        flat = self._cross.reshape(-1)
        power = self._steer_re @ flat.real - self._steer_im @ flat.imag
        best = int(np.argmax(power))
        ceiling = np.abs(self._cross).sum() + 1e-20
        self.azimuth_deg = float(self.azimuths[best])
        self.confidence = float(np.clip((power[best] - power.mean()) / ceiling, 0.0, 1.0))
        return self.azimuth_deg, self.confidence

    def steering_delays(self, azimuth_deg: float, positions) -> np.ndarray:
        """Arrival time (s) at each mic of a far-field source at ``azimuth_deg``."""
        rad = np.deg2rad(azimuth_deg)
        u = np.array([np.cos(rad), np.sin(rad), 0.0])
        return -(np.asarray(positions, dtype=np.float64) @ u) / SPEED_OF_SOUND_M_S


def _collinear(positions: np.ndarray) -> bool:
    """True when all mics lie on one line (rank-1 spread around their centre)."""
    spread = positions - positions.mean(axis=0)
    singular = np.linalg.svd(spread, compute_uv=False)
    return bool(singular[1] <= 1e-6 * max(singular[0], 1e-12))
