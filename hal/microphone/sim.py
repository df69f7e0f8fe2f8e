"""Simulated microphone array: generated speech, a tone, silence or a WAV file, spatialised
across the channels from the profile's geometry, plus the echo of whatever the simulated
speaker plays (hal.sim_room), paced in real time."""
from __future__ import annotations

import functools
import math
import time

import numpy as np

from hal.microphone import Microphone
from hal.profile import MicrophoneProfile
from hal.sim_room import room
from hal.wav import read_wav

SPEED_OF_SOUND_M_S = 343.0
TALKER_AZIMUTH_DEG = 60.0   # where the simulated talker stands, counter-clockwise from +x
SELF_NOISE_DBFS = -70.0     # independent per channel, like a real MEMS mic's floor
SPEECH_LOOP_S = 6.0
BUFFER_S = 0.5              # how late a reader may be before samples are lost


class SimMicrophone(Microphone):
    """``source``: "speech" (synthetic voiced speech at about -26 dBFS), "tone" (1 kHz at
    -20 dBFS), "silence" (self-noise only) or a WAV path (mono is spatialised; a file with
    one channel per mic is played as is)."""

    def __init__(self, profile: MicrophoneProfile) -> None:
        super().__init__(profile)
        self._rng = np.random.default_rng(1)
        self._signal = self._make_signal(profile.source)
        self._delays = self._channel_delays()
        self._position = 0
        self._next_deadline: float | None = None
        self.talker_azimuth_deg = TALKER_AZIMUTH_DEG

    def _make_signal(self, source: str) -> np.ndarray:
        rate = self.sample_rate
        if source == "speech":
            return synthetic_speech(rate, SPEECH_LOOP_S)[:, None]
        if source == "tone":
            t = np.arange(rate) / rate
            return (0.1 * np.sin(2 * np.pi * 1000 * t))[:, None]
        if source == "silence":
            return np.zeros((rate, 1))
        samples, _ = read_wav(source, sample_rate=rate)
        if samples.shape[1] not in (1, self.channels):
            from hal.wav import WavError
            raise WavError(f"wav: '{source}' has {samples.shape[1]} channels; "
                           f"expected 1 or {self.channels} for this microphone")
        return samples / 32768.0

    def _channel_delays(self) -> np.ndarray:
        """Whole-sample arrival delays of a far-field talker at TALKER_AZIMUTH_DEG."""
        if not self.geometry or self._signal.shape[1] != 1:
            return np.zeros(self.channels, dtype=int)
        direction = np.array([math.cos(math.radians(TALKER_AZIMUTH_DEG)),
                              math.sin(math.radians(TALKER_AZIMUTH_DEG)), 0.0])
        lead_s = np.array(self.geometry) @ direction / SPEED_OF_SOUND_M_S
        delays = np.round((lead_s.max() - lead_s) * self.sample_rate).astype(int)
        return delays

    def _read_period(self) -> np.ndarray:
        ends_at = self._pace()
        n = self.period_frames
        echo = room().echo(n, self.sample_rate, ends_at - n / self.sample_rate)
        length = len(self._signal)
        out = np.empty((n, self.channels))
        for ch in range(self.channels):
            src = self._signal[:, ch if self._signal.shape[1] > 1 else 0]
            idx = (self._position - self._delays[ch] + np.arange(n)) % length
            out[:, ch] = src[idx]
        self._position = (self._position + n) % length
        out += echo[:, None]
        out += self._rng.normal(0, 10 ** (SELF_NOISE_DBFS / 20), out.shape)
        return np.clip(out * 32768, -32768, 32767).astype(np.int16)

    def _pace(self) -> float:
        """Wait until the period is due; returns when its last sample was "captured", on a
        steady timeline (a late thread does not shift the echo it hears)."""
        period_s = self.period_frames / self.sample_rate
        now = time.monotonic()
        if self._next_deadline is None:
            self._next_deadline = now
        if self._next_deadline > now:
            time.sleep(self._next_deadline - now)
        if now - self._next_deadline > BUFFER_S:
            # Later than a device buffer holds: samples are lost, as in an ALSA overrun.
            self.overruns += 1
            self._next_deadline = now
        due = self._next_deadline
        self._next_deadline += period_s
        return due

    def status(self):
        status = super().status()
        status["source"] = self.profile.source
        return status


@functools.lru_cache(maxsize=4)
def synthetic_speech(sample_rate: int, seconds: float, seed: int = 7) -> np.ndarray:
    """Voiced, speech-like sound: a harmonic source with a wandering pitch shaped by vowel
    formants, in syllables of about 200 ms with pauses. Float in [-1, 1], about -26 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    f0 = 125 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    vowels = np.array([[730, 1090, 2440], [270, 2290, 3010], [530, 1840, 2480],
                       [570, 840, 2410], [300, 870, 2240]], dtype=float)
    syllable_s = 0.2
    count = int(seconds / syllable_s) + 1
    formants = vowels[rng.integers(0, len(vowels), count)][(t / syllable_s).astype(int)]
    signal = np.zeros(n)
    for k in range(1, int(4000 / 100)):
        freq = k * f0
        gain = sum(np.exp(-0.5 * ((freq - formants[:, i]) / 120.0) ** 2) / (i + 1) for i in range(3))
        signal += gain * np.sin(k * phase) / k ** 0.5
    syllable = np.sin(np.pi * ((t / syllable_s) % 1.0)) ** 2
    talking = rng.random(count)[(t / syllable_s).astype(int)] > 0.25
    signal *= syllable * talking
    rms = np.sqrt(np.mean(signal ** 2))
    return signal * (10 ** (-26 / 20) / rms) if rms > 0 else signal
