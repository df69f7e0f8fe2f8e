"""Acoustic echo canceller: drift-compensated Kalman adaptive filter + residual echo suppressor.

Signal flow per 10 ms frame::

    ref ──▶ DriftCompensator ──▶ KalmanEchoFilter ◀── mic
                  ▲                   │ error, echo estimate
                  └── measure_shift ◀─┤
                                      ▼
                              ResidualEchoSuppressor ──▶ out

The linear filter removes what a linear echo path explains; the suppressor removes what is
left (reverberant tail beyond the filter, loudspeaker distortion) only in the time-frequency
cells where echo dominates, so a local talker in double talk passes.
"""
from __future__ import annotations

import numpy as np

from media.audio.drift import DriftCompensator, measure_shift
from media.audio.errors import AudioConfigError
from media.audio.kalman_filter import KalmanEchoFilter
from media.audio.suppressor import ResidualEchoSuppressor

SUPPORTED = {16000: 160, 48000: 480}
# Partitions cut back to N taps per block once converged (None: all, every block). At
# 48 kHz the full gradient constraint is a third of the canceller's time (RTF 0.055 ->
# ~0.04); aec-bench through bench/aec_48k.py: ERLE median 30.1 -> 30.9 dB, re-convergence
# unchanged (0.90 s), DT PESQ 2.66 -> 2.60 with 3. Once the filter only adapts below the
# far end's band edge, 6 instead of 3: DT PESQ 2.82 -> 2.86 (a second seed's set: 2.82 ->
# 2.89), ERLE unchanged, RTF +0.001. At 16 kHz the budget allows the exact filter.
STEADY_CONSTRAINED = {48000: 6}
# Rates whose far end may fill only part of the band (a 16 kHz call played at 48 kHz): the
# filter adapts only below the reference's band edge (kalman_filter.py). At 16 kHz the far
# end fills the band and the filter stays exactly as it was measured.
TRACK_BAND = {48000}
TAIL_S = 0.3                 # echo path length the filter models (bulk delay + reverb)
DRIFT_INTERVAL_FRAMES = 25   # 0.25 s between echo-path snapshots for drift measurement
DRIFT_LOOP_GAIN = 0.7        # fraction of the measured motion corrected per measurement
DRIFT_MIN_CONFIDENCE = 0.8   # snapshots less coherent than this (path change, DT) are ignored
FULL_SCALE = 32768.0
MISALIGN_SMOOTHING = 0.95      # ~0.2 s memory of the error-on-estimate regression
MISALIGN_SHARE = 0.5           # |regression| above this: the estimate is half wrong
MISALIGN_RESET_SCALE = 1.0     # uncertainty raised back to the start-up prior
MISALIGN_COOLDOWN_FRAMES = 50
# A detection in the first seconds of far-end speech is the filter still learning, not a
# moved path: the suppressor is told only after this much far end (or after an earlier
# detection). Before, only "after an earlier detection": a path change went unreported to
# the suppressor when start-up had been quiet (48 kHz `10_path_change`: re-convergence
# 0.59 -> 1.14 s once the band-limited filter stopped tripping the watch at start-up).
STARTUP_FAR_FRAMES = 200
# After a path change the old estimate says little about the new echo: the suppressor
# assumes all of it leaks through until its regression has seen the new path.
MISALIGN_LEAK = 1.0
# The mic is delayed by this much so the reference delay can also shrink (drift one way)
# without re-centring: 2 ms lasts 20 s at 100 ppm. Then a whole-block step shifts the
# learned path one partition earlier, dropping its first 10 ms: harmless when the
# playback-to-capture delay exceeds that (any buffered ALSA path), a brief re-learn if not.
MIC_DELAY_S = 0.002


class EchoCanceller:
    """Removes the loudspeaker's echo from the microphone signal, keeping the local talker.

    ``process(mic, ref)`` takes one frame (``frame_size`` int16 samples each) of microphone
    and of the reference (what the loudspeaker played in the same frame) and returns the
    echo-free int16 frame, delayed by one frame (the suppressor's overlap-add) + 2 ms. Call it
    from one thread; an instance holds the state of one stream. ``suppress=False`` leaves
    only the linear canceller (for measurements); ``denoise=False`` leaves stationary noise
    to a separate noise suppressor.

    Raises AudioConfigError for an unsupported rate/frame pair, ValueError for frames of
    the wrong length.
    """

    def __init__(self, sample_rate: int = 16000, frame_size: int = 160, *,
                 suppress: bool = True, denoise: bool = True, tail_s: float = TAIL_S):
        if SUPPORTED.get(sample_rate) != frame_size:
            raise AudioConfigError(
                f"aec: sample_rate/frame_size must be one of "
                f"{', '.join(f'{r}/{f}' for r, f in SUPPORTED.items())} (10 ms), "
                f"got {sample_rate}/{frame_size}")
        self.sample_rate = sample_rate
        self.frame_size = frame_size
        partitions = int(round(tail_s * sample_rate / frame_size))
        self._filter = KalmanEchoFilter(frame_size, partitions, sample_rate=sample_rate,
                                        steady_constrained=STEADY_CONSTRAINED.get(sample_rate),
                                        track_band=sample_rate in TRACK_BAND)
        headroom = int(MIC_DELAY_S * sample_rate)
        self._drift = DriftCompensator(frame_size, (partitions + 2) * frame_size, headroom)
        self._mic_line = np.zeros(frame_size + headroom)
        self.latency_samples = frame_size + headroom   # output lags the input by this much
        self._suppressor = ResidualEchoSuppressor(frame_size, denoise=denoise) if suppress else None
        self._snapshot: np.ndarray | None = None
        self._frames = 0
        self._far_frames = 0
        self._far_total = 0
        self._mic_energy = 0.0
        self._out_energy = 0.0
        self._cov = self._var = self.misalignment = 0.0
        self._cooldown = 0
        self.path_changes = 0

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Cancel echo in one frame; see the class docstring."""
        n = self.frame_size
        if len(mic) != n or len(ref) != n:
            raise ValueError(f"aec: frames must be {n} samples, got mic {len(mic)}, ref {len(ref)}")
        line = self._mic_line
        line[:-n] = line[n:]
        line[-n:] = np.asarray(mic, dtype=np.float64) / FULL_SCALE
        m = line[:n].copy()
        r = self._drift.push(np.asarray(ref, dtype=np.float64) / FULL_SCALE)
        direction = self._drift.recentre_needed()
        if direction:
            blocks = self._drift.recentre(direction, self._filter.partitions + 1)
            self._filter.shift_partitions(direction)
            self._filter.load_history(blocks[:-1])
            r = blocks[-1]
        error, echo = self._filter.process(m, r)
        far_active = float(np.dot(r, r)) > n * 1e-8
        self._far_frames = self._far_frames + 1 if far_active else 0
        self._far_total += far_active
        self._track_drift()
        self._watch_misalignment(error, echo, far_active)
        out = error if self._suppressor is None else self._suppressor.process(error, echo)
        self._frames += 1
        if far_active:
            self._mic_energy = 0.99 * self._mic_energy + float(np.dot(m, m))
            self._out_energy = 0.99 * self._out_energy + float(np.dot(out, out))
        return np.minimum(np.maximum(np.rint(out * FULL_SCALE), -32768), 32767).astype(np.int16)

    def _watch_misalignment(self, error: np.ndarray, echo: np.ndarray, far_active: bool) -> None:
        # Regression of the error on the echo estimate: zero when the estimate is right
        # (the error holds only near-end speech and noise, both uncorrelated with it), near
        # -1 when the echo path moved away from it. A large magnitude means the filter is
        # wrong rather than disturbed, so its uncertainty is raised to re-learn fast; in
        # double talk the regression stays near zero and the filter holds still.
        if not far_active:
            return
        a = MISALIGN_SMOOTHING
        self._cov = a * self._cov + (1 - a) * float(np.dot(error, echo))
        self._var = a * self._var + (1 - a) * float(np.dot(echo, echo))
        self._cooldown -= 1
        self.misalignment = abs(self._cov) / (self._var + 1e-30)
        if self.misalignment > MISALIGN_SHARE and self._cooldown <= 0 and self._far_frames > 20:
            self._filter.reset_uncertainty(MISALIGN_RESET_SCALE)
            past_startup = self.path_changes or self._far_total >= STARTUP_FAR_FRAMES
            if self._suppressor is not None and past_startup:
                self._suppressor.expect_misalignment(MISALIGN_LEAK)
            self._cooldown = MISALIGN_COOLDOWN_FRAMES
            self.path_changes += 1

    def _track_drift(self) -> None:
        if self._frames % DRIFT_INTERVAL_FRAMES:
            return
        current = self._filter.weights.copy()
        before, self._snapshot = self._snapshot, current
        if before is None or self._far_frames < DRIFT_INTERVAL_FRAMES:
            return
        shift, confidence = measure_shift(before, current, self.frame_size, self.sample_rate)
        if confidence >= DRIFT_MIN_CONFIDENCE:
            interval = DRIFT_INTERVAL_FRAMES * self.frame_size
            self._drift.adjust_rate(DRIFT_LOOP_GAIN * shift / interval)

    def status(self) -> dict:
        """Running ERLE estimate (dB), drift (ppm), reference delay (ms), path changes seen."""
        erle = 10 * np.log10((self._mic_energy + 1e-12) / (self._out_energy + 1e-12))
        return {"erle_db": round(float(erle), 1),
                "drift_ppm": round(self._drift.rate * 1e6, 1),
                "reference_delay_ms": round(self._drift.delay * 1000 / self.sample_rate, 2),
                "path_changes": self.path_changes}
