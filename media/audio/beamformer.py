"""Array beamformer steered by SRP-PHAT direction of arrival: MVDR or delay-and-sum.

Each frame the mic spectra are combined per frequency bin into one channel that passes a
far-field wave from the steering azimuth unchanged. The steering follows the dominant
talker: confident per-frame DOA estimates (on frames clearly above the noise floor) vote
into a decaying azimuth histogram and the beam points at its peak, so it neither wanders
toward the fan in pauses nor flips to every interjection; ``talker_azimuth_deg`` exposes
that peak.

Methods (``method=``):
- ``delay-and-sum`` (default): phase-align and average. Cannot cancel or colour the
  talker when the steering is a few degrees off, but a 6.4 cm array gains almost nothing
  with it below ~2 kHz (bench/array.py, circular array, T60 0.4 s: +0.7 dB SI-SDR).
- ``mvdr``: minimum-variance distortionless weights against a noise covariance learned
  while the talker is absent (media/audio/mvdr.py), with diagonal loading. It starts as a
  superdirective beam and learns the room's noise and other talkers' directions (same
  room: +2.1 dB; on the 4-mic line array hardly more than delay-and-sum), but it also
  treats the talker's own reverberation as noise: the talker comes out 1-2.6 dB quieter
  and drier (PESQ-WB of the talker alone 3.2 against 4.1), so it is not the default until
  someone has listened to it in a real room.
- ``superdirective``: fixed MVDR against a modelled diffuse field (no adaptation).
"""
from __future__ import annotations

import numpy as np

from media.audio.doa import SrpPhatLocator
from media.audio.mvdr import NoiseTrackingMvdr, diffuse_coherence
from media.audio.stft import StreamingStft

FULL_SCALE = 32768.0
SPEECH_ABOVE_NOISE_DB = 6.0      # only frames this far above the floor update the DOA
MIN_CONFIDENCE = 0.1             # estimates below this do not count toward the talker
TALKER_MEMORY = 0.99             # per speech frame: ~1 s of DOA history decides the talker
TALKER_SPREAD_BINS = 2           # each estimate also counts for its neighbours (±4°)
NOISE_RISE = 10 ** (0.02 / 10)   # per frame: +2 dB/s
METHODS = ("mvdr", "delay-and-sum", "superdirective")
DEFAULT_LOADING = {"mvdr": 0.01, "superdirective": 0.01, "delay-and-sum": None}


class Beamformer:
    """Turns (frame_size, channels) int16 frames from an array into one int16 channel.

    ``geometry``: (x, y, z) metres per channel, in channel order. Output is one frame
    late (overlap-add). ``azimuth_deg``/``confidence`` hold the last DOA estimate,
    ``steering_deg`` where the beam points: it follows the talker unless
    ``fixed_azimuth_deg`` pins it (a box facing one table). ``method`` is one of
    ``METHODS``; ``loading`` is the diagonal loading of the two MVDR methods (default
    0.01: more is closer to delay-and-sum and more robust to mismatched capsules).
    ``weights`` holds the (channels, bins) weights applied to the last frame.
    One instance per stream, one thread.
    """

    def __init__(self, geometry, sample_rate: int, frame_size: int, *,
                 fixed_azimuth_deg: float | None = None, method: str = "delay-and-sum",
                 loading: float | None = None):
        if method not in METHODS:
            raise ValueError(f"beamformer: method must be one of {', '.join(METHODS)}, "
                             f"got {method!r}")
        self.method = method
        self.loading = DEFAULT_LOADING[method] if loading is None else loading
        self.positions = np.asarray(geometry, dtype=np.float64)
        self.sample_rate = sample_rate
        self.frame_size = frame_size
        self.locator = SrpPhatLocator(self.positions, sample_rate, 2 * frame_size)
        self._stft = StreamingStft(frame_size, channels=len(self.positions))
        self._omega = 2 * np.pi * np.arange(frame_size + 1) * sample_rate / (2 * frame_size)
        self._mvdr = (NoiseTrackingMvdr(self.positions, self._omega / (2 * np.pi), self.loading)
                      if method == "mvdr" else None)
        self.is_fixed = fixed_azimuth_deg is not None
        self.steering_deg = float(fixed_azimuth_deg or 0.0)
        self._steering, self._align = self._alignment(self.steering_deg)
        self.weights = self._align
        self._noise_power: float | None = None
        self._votes = np.zeros(len(self.locator.azimuths))

    @property
    def azimuth_deg(self) -> float | None:
        return self.locator.azimuth_deg

    @property
    def confidence(self) -> float:
        return self.locator.confidence

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Beamform one multi-channel frame; raises ValueError on a channel mismatch."""
        x = np.asarray(frame, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.positions):
            raise ValueError(f"beamformer: frames must be (samples, {len(self.positions)}) "
                             f"for this geometry, got {x.shape}")
        spectra = self._stft.analyse(x.T / FULL_SCALE)
        if self._is_speech(x):
            azimuth, confidence = self.locator.update(spectra)
            if confidence >= MIN_CONFIDENCE:
                self._vote(azimuth, confidence)
                talker = self.talker_azimuth_deg
                if not self.is_fixed and talker != self.steering_deg:
                    self.steering_deg = talker
                    self._steering, self._align = self._alignment(talker)
        if self._mvdr is not None:
            beam = self._mvdr.beam(spectra, self._steering)
            self.weights = self._mvdr.weights
        else:
            self.weights = self._align
            beam = np.sum(spectra * self._align, axis=0)
        out = self._stft.synthesise(beam)
        return np.clip(np.rint(out * FULL_SCALE), -32768, 32767).astype(np.int16)

    @property
    def talker_azimuth_deg(self) -> float | None:
        """Azimuth of the dominant talker over the last second or so of speech."""
        if not self._votes.any():
            return None
        return float(self.locator.azimuths[int(np.argmax(self._votes))])

    def _vote(self, azimuth: float, confidence: float) -> None:
        self._votes *= TALKER_MEMORY
        grid = self.locator.azimuths
        index = int(np.argmin(np.abs(grid - azimuth)))
        for offset in range(-TALKER_SPREAD_BINS, TALKER_SPREAD_BINS + 1):
            self._votes[(index + offset) % len(grid)] += confidence

    def _alignment(self, azimuth_deg: float) -> tuple[np.ndarray, np.ndarray]:
        """Steering vector and fixed weights (already conjugated), (mics, bins) each."""
        arrival = self.locator.steering_delays(azimuth_deg, self.positions)
        # Steering vector: how a far-field wave from there shows up at each mic.
        d = np.exp(-1j * self._omega[None, :] * arrival[:, None])          # (mics, bins)
        if self.method != "superdirective":
            return d, np.conj(d) / len(self.positions)                      # delay-and-sum
        # Superdirective: MVDR against a diffuse (spherically isotropic) noise field;
        # diagonal loading bounds the white-noise amplification at low frequencies where
        # a small array's coherence matrix is nearly singular.
        gamma = diffuse_coherence(self.positions, self._omega / (2 * np.pi))
        gamma = gamma + self.loading * np.eye(len(self.positions))[None]
        dt = d.T[:, :, None]                                               # (bins, mics, 1)
        solved = np.linalg.solve(gamma, dt)
        w = solved / (np.conj(dt).transpose(0, 2, 1) @ solved)
        return d, np.conj(w[:, :, 0]).T

    def _is_speech(self, x: np.ndarray) -> bool:
        power = float(np.mean(x * x)) + 1e-6
        if self._noise_power is None:
            self._noise_power = power
        self._noise_power = min(power, self._noise_power * NOISE_RISE)
        return 10 * np.log10(power / self._noise_power) >= SPEECH_ABOVE_NOISE_DB
