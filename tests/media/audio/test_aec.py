"""The echo canceller on synthetic rooms: convergence, double talk, path change, clock drift."""
from __future__ import annotations

import numpy as np
import pytest

from media.audio import EchoCanceller
from media.audio.errors import AudioConfigError

RATE, FRAME = 16000, 160


def mic_noise(n: int, seed: int = 99) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n) * 10 ** (-70 / 20)



def double_talk_sdr(out, near, lag: int, rate: int):
    """SDR (dB) and gain (dB) of the near-end talker in the output over the double-talk
    span 7..12 s (the output delayed by ``lag``), and that span as (start, length)."""
    a, b = 7 * rate, 12 * rate - lag
    aligned = out[a + lag:b + lag]
    target = near[a:a + len(aligned)]
    scale = np.dot(aligned, target) / np.dot(target, target)
    sdr = 10 * np.log10(np.sum((scale * target) ** 2) / np.sum((aligned - scale * target) ** 2))
    return sdr, 20 * np.log10(scale), (a, len(aligned))

def test_converges_on_a_synthetic_echo_path(room):
    ref = room["speech_like"](8, RATE, seed=1)
    echo = np.convolve(ref, room["room_response"](RATE, 20, 0.3, seed=2))[: len(ref)]
    mic = echo + mic_noise(len(ref))
    out = room["run"](EchoCanceller(RATE, FRAME), mic, ref, FRAME)
    assert room["erle_db"](mic, out, 5 * RATE, 8 * RATE) >= 25.0
    # Already useful after two seconds.
    assert room["erle_db"](mic, out, 2 * RATE, 3 * RATE) >= 15.0


def test_keeps_the_near_end_talker_in_double_talk(room):
    ref = room["speech_like"](12, RATE, seed=3)
    near = room["speech_like"](12, RATE, seed=4)
    near[: 6 * RATE] = 0.0                       # far end alone first, then double talk
    echo = np.convolve(ref, room["room_response"](RATE, 15, 0.3, seed=5))[: len(ref)]
    mic = echo + near + mic_noise(len(ref))
    canceller = EchoCanceller(RATE, FRAME)
    out = room["run"](canceller, mic, ref, FRAME)
    sdr, gain_db, (a, length) = double_talk_sdr(out, near, canceller.latency_samples, RATE)
    assert sdr >= 12.0
    assert gain_db >= -2.0                       # the talker is not attenuated
    mic_sdr = 10 * np.log10(np.sum(near[a:a + length] ** 2) / np.sum(echo[a:a + length] ** 2))
    assert sdr >= mic_sdr + 10.0


def test_reconverges_after_an_echo_path_change(room):
    ref = room["speech_like"](12, RATE, seed=6)
    h1 = room["room_response"](RATE, 10, 0.3, seed=7)
    h2 = room["room_response"](RATE, 25, 0.3, seed=8)
    echo = np.concatenate([np.convolve(ref, h1)[: 6 * RATE], np.convolve(ref, h2)[6 * RATE: len(ref)]])
    mic = echo + mic_noise(len(ref))
    out = room["run"](EchoCanceller(RATE, FRAME), mic, ref, FRAME)
    assert room["erle_db"](mic, out, 4 * RATE, 6 * RATE) >= 25.0
    assert room["erle_db"](mic, out, 6 * RATE, 6 * RATE + RATE // 4) < 10.0   # it was real
    assert room["erle_db"](mic, out, 7 * RATE, 8 * RATE) >= 12.0   # re-learning within ~1 s
    assert room["erle_db"](mic, out, 8 * RATE, 12 * RATE) >= 25.0


def test_reconverges_after_an_echo_path_change_at_48_khz(room):
    """At 48 kHz the converged filter is constrained one partition group at a time; a path
    change must bring back the full constraint and re-learning within about a second."""
    rate, frame = 48000, 480
    ref = room["speech_like"](10, rate, seed=16)
    h1 = room["room_response"](rate, 10, 0.3, seed=17)
    h2 = room["room_response"](rate, 25, 0.3, seed=18)
    echo = np.concatenate([np.convolve(ref, h1)[: 5 * rate], np.convolve(ref, h2)[5 * rate: len(ref)]])
    mic = echo + mic_noise(len(ref))
    out = room["run"](EchoCanceller(rate, frame), mic, ref, frame)
    assert room["erle_db"](mic, out, 3 * rate, 5 * rate) >= 25.0
    assert room["erle_db"](mic, out, 6 * rate, 7 * rate) >= 12.0
    assert room["erle_db"](mic, out, 7 * rate, 10 * rate) >= 25.0


def test_follows_a_100_ppm_clock_offset(room):
    seconds = 24
    ref = room["speech_like"](seconds, RATE, seed=9)
    # The loudspeaker plays 100 ppm fast: the echo is the reference on a stretched clock.
    t = np.arange(len(ref)) * (1 + 100e-6)
    played = np.interp(t, np.arange(len(ref)), ref)
    echo = np.convolve(played, room["room_response"](RATE, 30, 0.25, seed=10))[: len(ref)]
    mic = echo + mic_noise(len(ref))
    canceller = EchoCanceller(RATE, FRAME)
    out = room["run"](canceller, mic, ref, FRAME)
    assert room["erle_db"](mic, out, 18 * RATE, 24 * RATE) >= 20.0
    assert abs(abs(canceller.status()["drift_ppm"]) - 100) <= 30


def test_follows_a_clock_offset_at_48_khz_with_a_wideband_far_end(room):
    """A 16 kHz call played at 48 kHz: nothing in the reference above 8 kHz."""
    seconds, rate, frame = 24, 48000, 480
    wideband = room["speech_like"](seconds, 16000, seed=14)
    ref = np.fft.irfft(np.fft.rfft(wideband), 3 * len(wideband)) * 3     # band-limited 3x
    t = np.arange(len(ref)) * (1 + 100e-6)
    played = np.interp(t, np.arange(len(ref)), ref)
    echo = np.convolve(played, room["room_response"](rate, 30, 0.25, seed=15))[: len(ref)]
    mic = echo + mic_noise(len(ref))
    canceller = EchoCanceller(rate, frame)
    out = room["run"](canceller, mic, ref, frame)
    assert abs(abs(canceller.status()["drift_ppm"]) - 100) <= 30
    assert room["erle_db"](mic, out, 18 * rate, 24 * rate) >= 20.0


def test_adapts_only_in_the_far_ends_band_at_48_khz(room):
    """A 16 kHz call played at 48 kHz: the filter learns below the far end's band edge only
    (above it the reference is empty), still cancels the echo and keeps a full-band local
    talker in double talk."""
    rate, frame = 48000, 480
    wideband = room["speech_like"](12, 16000, seed=21)
    ref = np.fft.irfft(np.fft.rfft(wideband), 3 * len(wideband)) * 3     # band-limited 3x
    near = room["speech_like"](12, rate, seed=22)
    near[: 6 * rate] = 0.0
    echo = np.convolve(ref, room["room_response"](rate, 15, 0.3, seed=23))[: len(ref)]
    mic = echo + near + mic_noise(len(ref))
    canceller = EchoCanceller(rate, frame)
    out = room["run"](canceller, mic, ref, frame)
    edge_hz = canceller._filter.active_bins * rate / (2 * frame)
    assert 7000 <= edge_hz <= 8500
    assert room["erle_db"](mic, out, 4 * rate, 6 * rate) >= 30.0
    sdr, gain_db, _ = double_talk_sdr(out, near, canceller.latency_samples, rate)
    assert sdr >= 15.0
    assert gain_db >= -1.0


def test_adapts_across_the_band_for_a_full_band_far_end_at_48_khz(room):
    rate, frame = 48000, 480
    ref = room["speech_like"](3, rate, seed=24)
    echo = np.convolve(ref, room["room_response"](rate, 10, 0.2, seed=25))[: len(ref)]
    canceller = EchoCanceller(rate, frame)
    room["run"](canceller, echo + mic_noise(len(ref)), ref, frame)
    # speech_like's spectral tilt leaves almost nothing in the top 2 kHz
    assert canceller._filter.active_bins * rate / (2 * frame) >= 20000


def test_runs_at_48_khz(room):
    rate, frame = 48000, 480
    ref = room["speech_like"](5, rate, seed=11)
    echo = np.convolve(ref, room["room_response"](rate, 10, 0.2, seed=12))[: len(ref)]
    mic = echo + mic_noise(len(ref))
    out = room["run"](EchoCanceller(rate, frame), mic, ref, frame)
    assert room["erle_db"](mic, out, 3 * rate, 5 * rate) >= 20.0


def test_near_end_alone_passes_untouched(room):
    near = room["speech_like"](4, RATE, seed=13)
    near = near + mic_noise(len(near))
    canceller = EchoCanceller(RATE, FRAME)
    out = room["run"](canceller, near, np.zeros_like(near), FRAME)
    lag = canceller.latency_samples
    a, b = RATE, 4 * RATE - lag
    err = out[a + lag:b + lag] - near[a:b]
    assert 10 * np.log10(np.sum(near[a:b] ** 2) / np.sum(err ** 2)) >= 25.0


@pytest.mark.parametrize("rate, frame", [(44100, 441), (16000, 480), (8000, 80)])
def test_rejects_unsupported_rate_and_frame(rate, frame):
    with pytest.raises(AudioConfigError, match=f"got {rate}/{frame}"):
        EchoCanceller(rate, frame)


def test_rejects_frames_of_the_wrong_length():
    canceller = EchoCanceller(RATE, FRAME)
    with pytest.raises(ValueError, match="frames must be 160 samples, got mic 100"):
        canceller.process(np.zeros(100, np.int16), np.zeros(160, np.int16))
