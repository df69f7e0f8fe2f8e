"""Residual echo suppressor: per time-frequency gains that remove leftover echo, not the talker.

After the linear filter, what remains of the echo (reverberation beyond the filter,
loudspeaker distortion, misadjustment) follows the echo estimate's envelope. Per frequency
bin we learn how much of the estimate leaks into the error (``leak``: the regression of
error power on estimate power, which near-end speech does not bias because it is
uncorrelated with the echo) and attenuate only cells where that predicted residual is
comparable to the error. A near-end talker makes the error much larger than the predicted
residual in the bins it occupies, so those gains stay at 1: full duplex.

How hard the predicted residual is removed depends on whether someone in the room talks:
the share of the error that neither (three times) the echo nor the noise prediction
explains tells (``near_share``). With nobody talking the residual is over-subtracted 16 times (the leak
regression underestimates reverberant residue, and there is no talker to hurt); with a
talker 1.75 times, held for 200 ms after the last sign of one.

Stationary room noise is reduced in the same gain (``denoise``), as one joint rule rather
than a second suppressor in series, so the two never fight over the same cells.

Works on a sqrt-Hann STFT of two frames with a one-frame hop; adds one frame of latency.
"""
from __future__ import annotations

import numpy as np

from media.audio.noise import NoiseFloorTracker
from media.audio.stft import StreamingStft

OVERSUBTRACT = 1.75       # how many times the predicted residual must be removed
FEST_OVERSUBTRACT = 16.0  # the same with nobody talking in the room
NEAR_THRESHOLD = 0.75     # share of unexplained error energy that means a local talker
# The leak regression underestimates reverberant residue; allowing 3x the prediction before
# calling the rest "a talker" keeps far-end-only frames in the hard mode (ERLE +4 dB on the
# benchmark) while a talker in the room still stands far above it.
NEAR_TEST_OVERSUBTRACT = 3.0
NEAR_HANGOVER_FRAMES = 20
ECHO_GAIN_FLOOR = 10 ** (-40 / 20)
NOISE_GAIN_FLOOR = 10 ** (-15 / 20)   # noise is lowered, not gated: steady room tone
LEAK_SMOOTHING = 0.995    # per frame: ~2 s memory; shorter lets double talk bias it
LEAK_MIN, LEAK_MAX = 1e-3, 2.0
PSD_SMOOTHING = 0.6
NOISE_TRACKER_SMOOTHING = 0.7   # fast enough to reach the floor between syllables
NOISE_OVERSUBTRACT = 2.5        # the minimum of a smoothed periodogram sits below the mean
GAIN_RELEASE = 0.5        # gains may rise only this fast per frame (avoids musical noise)


class ResidualEchoSuppressor:
    """Applies echo-suppression (and optionally noise-suppression) gains, one block per call."""

    def __init__(self, block: int, *, denoise: bool = True):
        self.block = block
        self.denoise = denoise
        bins = block + 1
        self._stft = StreamingStft(block, channels=2)
        self._noise = NoiseFloorTracker(bins, smoothing=NOISE_TRACKER_SMOOTHING)
        self._s_e = np.zeros(bins)
        self._s_y = np.zeros(bins)
        self._mean_e = np.zeros(bins)
        self._mean_y = np.zeros(bins)
        self._cov = np.zeros(bins)
        self._var = np.zeros(bins)
        self._gain = np.ones(bins)
        self.leak = np.full(bins, 0.5)
        self.near_share = 0.0
        self._hangover = 0
        self.fest_oversubtract = FEST_OVERSUBTRACT
        self.near_threshold = NEAR_THRESHOLD

    def process(self, error: np.ndarray, echo: np.ndarray) -> np.ndarray:
        """Suppress one block of the linear canceller's ``error`` given its ``echo``
        estimate (float, full scale); returns the output block, one block late."""
        e_spec, y_spec = self._stft.analyse((error, echo))
        p_e = e_spec.real ** 2 + e_spec.imag ** 2
        p_y = y_spec.real ** 2 + y_spec.imag ** 2
        self._update_leak(p_e, p_y)
        s = PSD_SMOOTHING
        self._s_e = s * self._s_e + (1 - s) * p_e
        self._s_y = s * self._s_y + (1 - s) * p_y
        noise_floor = self._noise.update(p_e)
        predicted = self.leak * self._s_y
        noise = NOISE_OVERSUBTRACT * noise_floor if self.denoise else np.zeros_like(noise_floor)
        residual = self._oversubtract(predicted, noise) * predicted
        gain = 1.0 - (residual + noise) / (self._s_e + 1e-20)
        # Cells dominated by echo may go to -40 dB; noise-only cells keep a floor, so the
        # room tone stays steady instead of pumping with the far end's speech.
        floor = np.where(residual > noise, ECHO_GAIN_FLOOR, NOISE_GAIN_FLOOR)
        gain = np.minimum(np.maximum(gain, floor), 1.0)   # np.clip, without its overhead
        gain = np.minimum(gain, self._gain + GAIN_RELEASE)
        self._gain = gain
        return self._stft.synthesise(gain * e_spec)

    def _oversubtract(self, predicted: np.ndarray, noise: np.ndarray) -> float:
        # Share of the error the echo and noise predictions do not explain: a talker in
        # the room. Without one (far end alone) the residual can be removed harder; with
        # one, gently, and for a short hangover so syllable gaps do not flip the mode.
        unexplained = np.maximum(self._s_e - NEAR_TEST_OVERSUBTRACT * predicted - noise, 0.0).sum()
        self.near_share = float(unexplained / (self._s_e.sum() + 1e-20))
        if self.near_share > self.near_threshold:
            self._hangover = NEAR_HANGOVER_FRAMES
        else:
            self._hangover -= 1
        return OVERSUBTRACT if self._hangover > 0 else self.fest_oversubtract

    def expect_misalignment(self, leak: float) -> None:
        """The echo path just moved: assume the estimate leaks ``leak`` into the error until
        the regression has seen the new path (it keeps ~2 s of memory)."""
        self._cov = np.maximum(self._cov, leak * self._var)
        self.leak = np.minimum(np.maximum(self._cov / (self._var + 1e-20), LEAK_MIN), LEAK_MAX)

    def _update_leak(self, p_e: np.ndarray, p_y: np.ndarray) -> None:
        a = LEAK_SMOOTHING
        if p_y.sum() <= 1e-10:
            return                       # far end silent: nothing to learn from
        self._mean_e = a * self._mean_e + (1 - a) * p_e
        self._mean_y = a * self._mean_y + (1 - a) * p_y
        de = p_e - self._mean_e
        dy = p_y - self._mean_y
        self._cov = a * self._cov + (1 - a) * de * dy
        self._var = a * self._var + (1 - a) * dy * dy
        self.leak = np.minimum(np.maximum(self._cov / (self._var + 1e-20), LEAK_MIN), LEAK_MAX)
