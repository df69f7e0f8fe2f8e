"""Partitioned-block frequency-domain adaptive filter with Kalman step control.

The linear half of the echo canceller: it learns the loudspeaker-to-microphone echo path
as ``partitions`` blocks of ``block`` taps each and subtracts its echo estimate from the
microphone. The step size comes from a diagonal frequency-domain Kalman filter (after
Kuech, Mabande and Enzner, "State-space architecture of the partitioned-block-based
acoustic echo controller", ICASSP 2014): per partition and frequency bin it tracks the
uncertainty ``P`` of the filter coefficient and weighs it against the observed
measurement noise (near-end speech plus room noise). When the near-end talks the error
grows, the measurement noise estimate grows with it and the step shrinks, so the filter
does not diverge in double talk and needs no separate detector. An uncertain filter
(at start, after an echo-path change) takes large steps.

Units: float samples in full scale (int16 / 32768). Not thread-safe; one instance per
stream, called from one worker thread.
"""
from __future__ import annotations

import numpy as np

LEARNING_S = 1.0   # after start-up and a path change: every partition constrained this long
# With ``track_band``: the bins above the far end's band edge, where the reference holds
# less than this share of its energy, do not adapt (see ``KalmanEchoFilter``).
EMPTY_BAND_SHARE = 1e-6
BAND_SMOOTHING = 0.99   # per far-end block: ~1 s of far-end speech
BAND_MIN_POWER = 1e-8   # mean square (-80 dBFS): quieter blocks (pauses, dither) do not count


class KalmanEchoFilter:
    """Learns the echo path and returns the echo-free error, one block at a time.

    ``block``: samples per call (the FFT is twice that). ``partitions``: filter length in
    blocks. ``transition`` (A in the state-space model, per block) sets how fast the echo
    path is assumed to wander: closer to 1 gives less misadjustment, lower tracks faster
    (clock drift, people moving). ``noise_smoothing`` is the forgetting factor of the
    measurement-noise estimate. The start-up uncertainty ``initial_uncertainty`` is spread
    over the partitions flat for ``prior_flat_s`` (bulk delay), then decaying with
    ``prior_decay_s``.

    ``track_band``: adapt only below the far end's band edge, tracked from the reference
    (the frequency above which it holds less than ``EMPTY_BAND_SHARE`` of its energy). A
    wideband (0-8 kHz) far end played at 48 kHz leaves two thirds of the bins empty: there
    the block transform of the reference holds only the edges' leakage of the lower band,
    the error is as small, and the Kalman step, normalised by both, is large and learns
    noise; the gradient constraint then spreads that into the band that carries the echo
    (aec-bench through bench/aec_48k.py: double-talk PESQ-WB median 2.60 without this,
    2.79 with it). Skipping those bins also saves their share of the per-bin work.
    """

    def __init__(self, block: int, partitions: int, *, sample_rate: int = 16000,
                 transition: float = 0.9999, noise_smoothing: float = 0.5,
                 initial_uncertainty: float = 30.0, prior_flat_s: float = 0.05,
                 prior_decay_s: float = 0.05, steady_constrained: int | None = None,
                 track_band: bool = False):
        self.block = block
        self.steady_constrained = steady_constrained
        # Blocks of full gradient constraint left: the whole start-up / re-learning second.
        self._learning_blocks = int(round(LEARNING_S * sample_rate / block))
        self._learning_length = self._learning_blocks
        self._next_constrained = 0
        self.partitions = partitions
        self.transition = transition
        self.noise_smoothing = noise_smoothing
        bins = block + 1
        self._x_buffer = np.zeros(2 * block)
        # Reference history, newest first, as views into rings written twice (at h and
        # h + partitions), so a new block costs two row writes instead of a shift.
        self._spectra_ring = np.zeros((2 * partitions, bins), dtype=complex)
        self._powers_ring = np.zeros((2 * partitions, bins))
        self._head = 0
        self._spectra = self._spectra_ring[:partitions]
        self._powers = self._powers_ring[:partitions]
        self.weights = np.zeros((partitions, bins), dtype=complex)
        # Prior uncertainty per partition: room responses decay, so most of what there is
        # to learn sits in the first ~50 ms after the bulk delay. Spending the step size
        # there (as proportionate NLMS does) makes the first seconds converge faster.
        lag_s = np.maximum(np.arange(partitions) * block / sample_rate - prior_flat_s, 0.0)
        profile = np.exp(-lag_s / prior_decay_s)
        self.prior = (initial_uncertainty * profile / profile.sum())[:, None]
        self.uncertainty = np.repeat(self.prior, bins, axis=1)
        self._noise_psd = np.zeros(bins)
        self._process_scale = 1.0 - transition ** 2
        self.track_band = track_band
        self.active_bins = bins          # bins below the far end's band edge: these adapt
        self._hann_spec = np.zeros(bins, dtype=complex)
        self._ref_psd = np.zeros(bins)

    def process(self, mic: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Adapt on one block; returns (error, echo estimate), each ``block`` samples."""
        n = self.block
        self._x_buffer[:n] = self._x_buffer[n:]
        self._x_buffer[n:] = ref
        x_spec = np.fft.rfft(self._x_buffer)
        p = self.partitions
        h = self._head = (self._head - 1) % p
        power = x_spec.real ** 2 + x_spec.imag ** 2
        self._spectra_ring[h] = self._spectra_ring[h + p] = x_spec
        self._powers_ring[h] = self._powers_ring[h + p] = power
        self._spectra = self._spectra_ring[h:h + p]
        self._powers = self._powers_ring[h:h + p]
        if self.track_band and float(np.dot(ref, ref)) > n * BAND_MIN_POWER:
            self._track_band(x_spec)

        echo_spec = np.einsum("pk,pk->k", self.weights, self._spectra)
        echo = np.fft.irfft(echo_spec)[n:]
        error = mic - echo
        padded = np.zeros(2 * n)
        padded[n:] = error
        self._adapt(np.fft.rfft(padded))
        return error, echo

    def _track_band(self, x_spec: np.ndarray) -> None:
        # Hann-windowed: the plain block transform leaks the lower band into every bin
        # ~40 dB down, which would hide where the far end's band ends. Only blocks with far
        # end speech count: in long pauses white dither would otherwise open the whole band.
        # The periodic Hann window is a 3-tap kernel on the block's own spectrum, which is
        # cheaper than a second transform (neighbours beyond DC and Nyquist mirror).
        spec = self._hann_spec
        spec[1:-1] = 0.5 * x_spec[1:-1] - 0.25 * (x_spec[:-2] + x_spec[2:])
        spec[0] = 0.5 * x_spec[0] - 0.5 * x_spec[1].real
        spec[-1] = 0.5 * x_spec[-1] - 0.5 * x_spec[-2].real
        b = BAND_SMOOTHING
        self._ref_psd = b * self._ref_psd + (1.0 - b) * (spec.real ** 2 + spec.imag ** 2)
        tail = np.cumsum(self._ref_psd[::-1])[::-1]       # energy at and above each bin
        empty = tail < EMPTY_BAND_SHARE * tail[0]
        self.active_bins = int(np.argmax(empty)) if tail[0] > 0 and empty.any() else len(tail)

    def _adapt(self, e_spec: np.ndarray) -> None:
        n = self.block
        s = self.noise_smoothing
        k = self.active_bins            # all bins unless ``track_band`` found an empty top
        e_spec = e_spec[:k]
        powers = self._powers[:, :k]
        uncertainty = self.uncertainty[:, :k]
        e_pow = e_spec.real ** 2 + e_spec.imag ** 2
        echo_var = (uncertainty * powers).sum(axis=0)
        noise_psd = self._noise_psd[:k]
        # The factor 2 maps the zero-padded error's PSD onto the 2N-point transform of X.
        mu = uncertainty / (echo_var + 2.0 * noise_psd + 1e-12)
        # Measurement noise from the a-posteriori error: what the updated filter could not
        # explain. Using the prior error instead would count unlearnt echo as noise and
        # stall convergence after a path change.
        post = 1.0 - 0.5 * (mu * powers).sum(axis=0)
        noise_psd = s * noise_psd + (1.0 - s) * e_pow * post * post
        self._noise_psd[:k] = noise_psd
        # Step with the noise estimate that already includes this frame: a near-end onset
        # then shrinks the step in the very frame it starts, not one frame late (measured:
        # +2 dB double-talk SDR, +0.35 PESQ on the benchmark).
        mu = uncertainty / (echo_var + 2.0 * noise_psd + 1e-12)
        gain = mu * np.conj(self._spectra[:, :k])
        a = self.transition
        if self.steady_constrained is None or self._learning_blocks > 0:
            self._learning_blocks -= 1
            # irfft zero-fills the bins above k.
            update = np.fft.irfft(gain * e_spec, n=2 * n, axis=1)
            update[:, n:] = 0.0                 # gradient constraint: keep filters causal, N taps
            self.weights = a * (self.weights + np.fft.rfft(update, axis=1))
        else:
            # Converged: as SpeexDSP's MDF, every partition takes the unconstrained step and
            # a few in turn are cut back to N taps (the full constraint is a third of the
            # canceller's time at 48 kHz; while learning fast it is what keeps re-convergence
            # under a second, so it stays on then).
            self.weights[:, :k] += gain * e_spec
            rows = (self._next_constrained + np.arange(self.steady_constrained)) % self.partitions
            self._next_constrained = int(rows[-1] + 1) % self.partitions
            taps = np.fft.irfft(self.weights[rows], axis=1)
            taps[:, n:] = 0.0
            self.weights[rows] = np.fft.rfft(taps, axis=1)
            self.weights *= a
        weights = self.weights[:, :k]
        w_pow = weights.real ** 2 + weights.imag ** 2
        # The 0.5 is the share of the update the constraint keeps (N of 2N taps).
        self.uncertainty[:, :k] = (a * a) * (1.0 - 0.5 * mu * powers) * uncertainty \
            + self._process_scale * w_pow

    def shift_partitions(self, direction: int) -> None:
        """Move the learned response one block later (+1) or earlier (-1) in time."""
        for a in (self.weights, self.uncertainty):
            if direction > 0:
                a[1:] = a[:-1].copy()
                a[0] = a[1] if a is self.uncertainty else 0.0
            else:
                a[:-1] = a[1:].copy()
                a[-1] = a[-2] if a is self.uncertainty else 0.0

    def load_history(self, blocks: np.ndarray) -> None:
        """Replace the reference history by ``partitions + 1`` blocks, oldest first."""
        n = self.block
        pairs = np.concatenate([blocks[:-1], blocks[1:]], axis=1)[::-1]   # newest first
        spectra = np.fft.rfft(pairs, axis=1)
        p = self.partitions
        self._head = 0
        self._spectra_ring[:p] = self._spectra_ring[p:] = spectra[:p]
        self._powers_ring[:p] = self._powers_ring[p:] = spectra.real[:p] ** 2 + spectra.imag[:p] ** 2
        self._spectra = self._spectra_ring[:p]
        self._powers = self._powers_ring[:p]
        self._x_buffer[:n] = blocks[-2]
        self._x_buffer[n:] = blocks[-1]

    def reset_uncertainty(self, scale: float = 1.0) -> None:
        """Mark the filter as unsure (after a detected echo-path change): fast re-learning."""
        self._learning_blocks = self._learning_length
        np.maximum(self.uncertainty, scale * self.prior, out=self.uncertainty)
