"""Simulated rooms and arrays for the audio tests: speech-like signals, exponentially decaying
random impulse responses, far-field plane waves on a mic array. Deterministic (fixed seeds)
and fast to generate."""
from __future__ import annotations

import numpy as np

from media.audio.doa import SPEED_OF_SOUND_M_S


def speech_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Coloured noise with a syllable-rate on/off envelope, about -26 dBFS when active."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    white = rng.standard_normal(n + 64)
    coloured = np.convolve(white, np.hanning(9), mode="valid")[:n]   # speech-ish tilt
    syllables = rng.uniform(0.15, 0.35, size=int(seconds * 8) + 2)
    gates = np.repeat(rng.random(len(syllables)) > 0.25, (syllables * rate).astype(int))[:n]
    envelope = np.convolve(np.pad(gates, (0, max(0, n - len(gates)))).astype(float),
                           np.hanning(rate // 50) / (rate // 100), mode="same")[:n]
    sig = coloured * envelope
    return sig / np.sqrt(np.mean(sig ** 2) + 1e-20) * 10 ** (-26 / 20)


def room_response(rate: int, delay_ms: float, t60_s: float, seed: int, gain: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    length = int(rate * t60_s * 0.5)
    t = np.arange(length) / rate
    h = rng.standard_normal(length) * np.exp(-6.9 * t / t60_s)
    h[0] = 4.0                                      # direct sound
    h = np.concatenate([np.zeros(int(delay_ms * rate / 1000)), h])
    return gain * h / np.sqrt(np.sum(h ** 2))


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def run(canceller, mic: np.ndarray, ref: np.ndarray, frame: int) -> np.ndarray:
    mic16, ref16 = to_int16(mic), to_int16(ref)
    out = [canceller.process(mic16[i:i + frame], ref16[i:i + frame])
           for i in range(0, len(mic16) - frame + 1, frame)]
    return np.concatenate(out).astype(np.float64) / 32768


def erle_db(mic: np.ndarray, out: np.ndarray, start: int, stop: int) -> float:
    return float(10 * np.log10(np.sum(mic[start:stop] ** 2) / (np.sum(out[start:stop] ** 2) + 1e-20)))


ARRAY_RATE = 16000
# The sim profile's array: 4 mics on a 32 mm radius circle.
GEOMETRY = [(0.032, 0.0, 0.0), (0.0, 0.032, 0.0), (-0.032, 0.0, 0.0), (0.0, -0.032, 0.0)]


def plane_wave(signal: np.ndarray, azimuth_deg: float, geometry) -> np.ndarray:
    """(samples, mics): the signal as each mic hears a far-field source at that azimuth."""
    rad = np.deg2rad(azimuth_deg)
    u = np.array([np.cos(rad), np.sin(rad), 0.0])
    arrival = -(np.asarray(geometry) @ u) / SPEED_OF_SOUND_M_S
    spec = np.fft.rfft(signal)
    freqs = np.fft.rfftfreq(len(signal), 1 / ARRAY_RATE)
    return np.stack([np.fft.irfft(spec * np.exp(-2j * np.pi * freqs * t), len(signal))
                     for t in arrival], axis=1)


def array_recording(azimuth_deg: float, snr_db: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    talker = speech_like(4, ARRAY_RATE, seed=seed)
    mics = plane_wave(talker, azimuth_deg, GEOMETRY)
    # Two weaker reflections from the side walls: a room, not an anechoic chamber.
    for offset_deg, delay_ms, gain in ((70, 6, 0.4), (-110, 11, 0.3)):
        delayed = np.concatenate([np.zeros(int(delay_ms * ARRAY_RATE / 1000)), talker])[: len(talker)]
        mics += gain * plane_wave(delayed, azimuth_deg + offset_deg, GEOMETRY)
    rng = np.random.default_rng(seed + 100)
    noise = rng.standard_normal(mics.shape) * np.sqrt(np.mean(talker ** 2)) * 10 ** (-snr_db / 20)
    return mics, mics + noise
