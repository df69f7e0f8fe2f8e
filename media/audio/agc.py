"""Automatic gain control: brings talkers near and far to one speech level, never clipping.

The level is measured only on frames that carry speech (well above the tracked noise
floor), so silence does not pump the gain up and amplify the room. The gain moves slowly
toward ``target_dbfs`` (a few dB per second) but drops at once when a frame would clip;
within a frame the gain is ramped linearly from the previous value, so steps are not
audible as clicks.
"""
from __future__ import annotations

import numpy as np

FULL_SCALE = 32768.0
SPEECH_ABOVE_NOISE_DB = 9.0     # a frame this far above the floor counts as speech
LEVEL_SMOOTHING = 0.95          # ~200 ms of speech frames for the level estimate
RISE_DB_PER_FRAME = 0.05        # 5 dB/s up: slow, so pauses do not pump
PEAK_LIMIT = 10 ** (-1 / 20)    # output peaks stay below -1 dBFS
INITIAL_NOISE_POWER = 10 ** (-70 / 10)


class AutomaticGainControl:
    """Per-frame gain toward ``target_dbfs`` speech level within [min_gain_db, max_gain_db].

    Works on mono int16 frames of any length; one instance per stream, one thread.
    ``gain_db`` is the gain applied at the end of the last frame.
    """

    def __init__(self, *, target_dbfs: float = -26.0, max_gain_db: float = 20.0,
                 min_gain_db: float = -10.0):
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        self.min_gain_db = min_gain_db
        self.gain_db = 0.0
        self.speech_dbfs: float | None = None
        self._noise_power = None

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Return the frame with gain applied (int16)."""
        x = np.asarray(frame, dtype=np.float64) / FULL_SCALE
        power = float(np.mean(x * x)) + 1e-12
        self._track(power)
        wanted = self.gain_db
        if self.speech_dbfs is not None:
            wanted = float(np.clip(self.target_dbfs - self.speech_dbfs,
                                   self.min_gain_db, self.max_gain_db))
        # Up slowly, down at once.
        new_db = min(wanted, self.gain_db + RISE_DB_PER_FRAME)
        peak = float(np.max(np.abs(x))) if len(x) else 0.0
        if peak > 0:
            new_db = min(new_db, 20 * np.log10(PEAK_LIMIT / peak))
        # Rising gain is ramped across the frame (no click); falling gain applies at once,
        # or the frame's first samples would still clip.
        start_db = self.gain_db if new_db > self.gain_db else new_db
        ramp = 10 ** (np.linspace(start_db, new_db, len(x), endpoint=True) / 20)
        self.gain_db = new_db
        y = x * ramp
        return np.clip(np.rint(y * FULL_SCALE), -32768, 32767).astype(np.int16)

    def _track(self, power: float) -> None:
        if self._noise_power is None:
            # Start low rather than at the first frame, which may already be speech.
            self._noise_power = INITIAL_NOISE_POWER
        # Noise floor: falls at once, rises 1 dB/s; speech is what stands out above it.
        self._noise_power = min(power, self._noise_power * 10 ** (0.01 / 10))
        if 10 * np.log10(power / self._noise_power) < SPEECH_ABOVE_NOISE_DB:
            return
        level = 10 * np.log10(power)
        if self.speech_dbfs is None:
            self.speech_dbfs = level
        else:
            a = LEVEL_SMOOTHING
            self.speech_dbfs = float(10 * np.log10(a * 10 ** (self.speech_dbfs / 10)
                                                   + (1 - a) * power))
