"""aec-bench candidates that run our 48 kHz echo canceller behind aec-bench's 16 kHz frames.

../shared/aec-bench only speaks 16 kHz / 160-sample frames; the box's HDMI/USB audio often
runs at 48 kHz, where the canceller works on 480-sample frames with three times the taps.
``EchoCanceller48k`` upsamples mic and reference 3x (zero-stuffing + a 97-tap FIR,
streaming), runs ``EchoCanceller(48000, 480)`` and decimates the output back. Mic and
reference go through the same filter, so the echo path the canceller sees is the
scenario's, band-limited to 7.6 kHz. ``Resampled16k`` is the control: the same up/down
conversion around the 16 kHz canceller (48 kHz -> 16 kHz -> canceller -> 48 kHz inside the
wrapper), which shows what the resampling alone costs. From /work/main:

    PYTHONPATH=. AEC_BENCH_DATA=/tmp/aec-data python ../shared/aec-bench/run.py --set public \\
        --candidate bench.aec_48k:EchoCanceller48k --candidate bench.aec_48k:Resampled16k

(``bench.aec_48k``, not ``aec_48k`` with bench/ on the path: bench/array.py would shadow
the standard library's ``array``.) RTF includes the resampling filters.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import firwin, lfilter

from media.audio import EchoCanceller

FACTOR = 3
TAPS = firwin(97, 7600, fs=48000)     # anti-imaging / anti-aliasing for 16 <-> 48 kHz


class _Resampler:
    """Streaming 16 -> 48 kHz (``up``) or 48 -> 16 kHz (``down``) through one FIR."""

    def __init__(self):
        self._state = np.zeros(len(TAPS) - 1)

    def up(self, x: np.ndarray) -> np.ndarray:
        stuffed = np.zeros(len(x) * FACTOR)
        stuffed[::FACTOR] = np.asarray(x, dtype=np.float64) * FACTOR
        y, self._state = lfilter(TAPS, 1.0, stuffed, zi=self._state)
        return y

    def down(self, x: np.ndarray) -> np.ndarray:
        y, self._state = lfilter(TAPS, 1.0, np.asarray(x, dtype=np.float64), zi=self._state)
        return y[::FACTOR]


def _pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


class _At48k:
    """16 kHz frames in and out; ``inner`` processes 48 kHz int16 frames of 480."""

    def __init__(self, inner):
        self.inner = inner
        self._mic, self._ref, self._out = _Resampler(), _Resampler(), _Resampler()

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        out = self.inner(_pcm(self._mic.up(mic)), _pcm(self._ref.up(ref)))
        return _pcm(self._out.down(out))


class _Via16k:
    """A 48 kHz frame processor made of the 16 kHz canceller between resamplers."""

    def __init__(self):
        self.canceller = EchoCanceller(sample_rate=16000, frame_size=160)
        self._mic, self._ref, self._out = _Resampler(), _Resampler(), _Resampler()

    def __call__(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        out = self.canceller.process(_pcm(self._mic.down(mic)), _pcm(self._ref.down(ref)))
        return self._out.up(out)


def EchoCanceller48k(sample_rate: int = 16000, frame_size: int = 160):
    """Candidate: ``EchoCanceller(48000, 480)`` behind 16 kHz I/O."""
    return _At48k(EchoCanceller(sample_rate=48000, frame_size=480).process)


def Resampled16k(sample_rate: int = 16000, frame_size: int = 160):
    """Control: the 16 kHz canceller behind the same two resampling stages."""
    return _At48k(_Via16k())
