"""Microphones and speakers through real alsa-lib and pyalsaaudio: capture reads a WAV's
samples through the ``file`` plugin (tests/conftest.py defines the PCMs), playback writes
a file that is read back and compared sample by sample. One contract, two backends."""
from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from hal.errors import DeviceUnavailable
from hal.microphone import open_microphone
from hal.profile import MicrophoneProfile, SpeakerProfile
from hal.speaker import open_speaker
from hal.wav import WavError, read_wav, write_wav

RATE = 16000
CHANNELS = 4
PERIOD = RATE // 100


def test_speech(seconds=1.0, channels=CHANNELS, seed=3):
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * seconds)) / RATE
    tones = [np.sin(2 * np.pi * (300 + 200 * ch) * t) * (0.1 * (ch + 1)) for ch in range(channels)]
    signal = np.stack(tones, axis=1) + rng.normal(0, 0.001, (len(t), channels))
    return (signal * 32767).astype(np.int16)


test_speech.__test__ = False  # a helper, not a test


@pytest.fixture
def recorded_wav(tmp_path):
    """A 4-channel WAV and the raw file the ALSA file plugin feeds to capture."""
    samples = test_speech()
    wav = tmp_path / "room.wav"
    write_wav(wav, samples, RATE)
    data, _ = read_wav(wav, sample_rate=RATE, channels=CHANNELS)
    raw = tmp_path / "room.raw"
    data.astype("<i2").tofile(raw)
    return samples, raw


def mic_profile(backend, raw=None, **changes):
    device = f"rbcap:INFILE={raw}" if backend == "alsa" else ""
    return dataclasses.replace(MicrophoneProfile(backend=backend, device=device, sample_rate=RATE,
                                                 channels=CHANNELS, source="tone"), **changes)


def test_alsa_capture_returns_the_wav_samples_exactly(recorded_wav):
    samples, raw = recorded_wav
    with open_microphone(mic_profile("alsa", raw)) as mic:
        assert mic.backend == "alsa"
        periods = [mic.read() for _ in range(len(samples) // PERIOD)]
    captured = np.concatenate(periods)
    assert captured.shape == samples.shape
    np.testing.assert_array_equal(captured, samples)


@pytest.mark.parametrize("backend", ["alsa", "sim"])
async def test_microphone_contract_periods_shape_and_level(backend, recorded_wav):
    _, raw = recorded_wav
    mic = open_microphone(mic_profile(backend, raw))
    try:
        got = []
        async with asyncio.timeout(5):
            async for period in mic.periods():
                got.append(period)
                if len(got) == 20:
                    break
    finally:
        mic.close()
        mic.close()
    assert all(p.shape == (PERIOD, CHANNELS) and p.dtype == np.int16 for p in got)
    rms = np.sqrt(np.mean(np.concatenate(got).astype(float) ** 2, axis=0))
    assert (20 * np.log10(rms / 32768) > -40).all()   # every channel carries signal
    assert mic.status()["periods"] >= 20   # the reader thread may run ahead of the consumer


def test_alsa_playback_writes_exactly_what_was_played(tmp_path):
    out = tmp_path / "played.raw"
    profile = SpeakerProfile(backend="alsa", device=f"rbplay:OUTFILE={out}", sample_rate=48000, channels=2)
    tone = (np.sin(2 * np.pi * 440 * np.arange(4800) / 48000) * 10000).astype(np.int16)
    with open_speaker(profile) as speaker:
        speaker.write(tone)                      # mono, copied to both channels
        speaker.write(np.zeros((480, 2), np.int16))
    played = np.fromfile(out, dtype="<i2").reshape(-1, 2)
    np.testing.assert_array_equal(played[:4800, 0], tone)
    np.testing.assert_array_equal(played[:4800, 1], tone)
    assert len(played) == 5280 and not played[4800:].any()
    assert speaker.status()["frames"] == 5280


def test_sim_speaker_keeps_what_was_played_and_writes_its_sink(tmp_path):
    sink = tmp_path / "sink.wav"
    profile = SpeakerProfile(backend="sim", sample_rate=16000, channels=1, sink=str(sink))
    tone = (np.sin(np.arange(1600) / 3) * 8000).astype(np.int16)
    with open_speaker(profile) as speaker:
        speaker.write(tone)
        np.testing.assert_array_equal(speaker.played()[:, 0], tone)
        assert -21 < speaker.status()["level_dbfs"] < -15
    written, rate = read_wav(sink)
    assert rate == 16000
    np.testing.assert_array_equal(written[:, 0], tone)


def test_speaker_rejects_wrong_sample_type_and_channel_count():
    with open_speaker(SpeakerProfile(backend="sim", channels=2)) as speaker:
        with pytest.raises(ValueError, match="samples must be int16, got float64"):
            speaker.write(np.zeros(10))
        with pytest.raises(ValueError, match="got 3 channels, the device has 2"):
            speaker.write(np.zeros((10, 3), np.int16))


def test_missing_alsa_card_names_device_format_and_reason():
    profile = MicrophoneProfile(backend="alsa", device="hw:CARD=NoSuchArray", sample_rate=16000, channels=4)
    with pytest.raises(DeviceUnavailable) as caught:
        open_microphone(profile)
    assert str(caught.value) == ("alsa: cannot open capture 'hw:CARD=NoSuchArray' at 16000 Hz, 4 ch "
                                 "(No such device)")


def test_missing_playback_device_is_named():
    with pytest.raises(DeviceUnavailable, match=r"alsa: cannot open playback 'hw:CARD=Gone' at 48000 Hz, 2 ch \(No such device\)"):
        open_speaker(SpeakerProfile(backend="alsa", device="hw:CARD=Gone"))


def test_unreadable_capture_source_is_reported_with_alsa_reason(tmp_path):
    missing = tmp_path / "absent.raw"
    with pytest.raises(DeviceUnavailable, match=r"alsa: cannot open capture 'rbcap:INFILE=.*absent.raw'"):
        open_microphone(mic_profile("alsa", missing))


@pytest.mark.parametrize("change, message", [
    (dict(sample_rate=48000), "is 16000 Hz; expected 48000 Hz"),
    (dict(channels=2), "has 4 channels; expected 1 or 2 for this microphone"),
])
def test_sim_microphone_wav_source_checks_rate_and_channels(tmp_path, change, message):
    wav = tmp_path / "talk.wav"
    write_wav(wav, test_speech(0.1), RATE)
    with pytest.raises(WavError, match=message.replace("(", r"\(").replace(")", r"\)")):
        open_microphone(mic_profile("sim", source=str(wav), **change))


def test_truncated_wav_is_reported(tmp_path):
    wav = tmp_path / "cut.wav"
    write_wav(wav, test_speech(0.1), RATE)
    wav.write_bytes(wav.read_bytes()[:-100])
    with pytest.raises(WavError, match="is truncated: header says 1600 frames, file holds 1587"):
        read_wav(wav)


def test_non_wav_file_is_reported(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("not audio")
    with pytest.raises(WavError, match="is not a readable WAV file"):
        read_wav(path)


def test_sim_microphone_spatialises_a_talker_across_the_array():
    geometry = ((0.032, 0, 0), (0, 0.032, 0), (-0.032, 0, 0), (0, -0.032, 0))
    profile = MicrophoneProfile(backend="sim", sample_rate=48000, channels=4, geometry=geometry, source="speech")
    with open_microphone(profile) as mic:
        block = np.concatenate([mic.read() for _ in range(50)]).astype(float)
    lags = []
    for ch in range(1, 4):
        corr = np.correlate(block[:, ch], block[:, 0][20:-20], mode="valid")
        lags.append(int(np.argmax(corr)) - 20)
    # Talker at 60°: mic 1 (+y) hears it first, mic 3 (-y) last, relative to mic 0 (+x).
    assert lags[0] < 0 < lags[2]


async def test_closing_while_the_reader_thread_reads_stops_it_first(recorded_wav):
    """Leaving ``async for`` does not finalise the generator at once, so close() may run
    while the reader thread is inside pcm.read(): freeing the PCM under it crashed
    pyalsaaudio. close() now stops and joins the reader before releasing the device."""
    _, raw = recorded_wav
    for _ in range(20):
        mic = open_microphone(mic_profile("alsa", raw))
        async for _period in mic.periods():
            break
        mic.close()
        assert mic.is_closed and not mic.reader.is_running
