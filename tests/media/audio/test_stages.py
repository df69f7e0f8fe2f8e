"""Noise suppression, gain control and the stage chain with its capture and render sides."""
from __future__ import annotations

import numpy as np
import pytest

from media.audio import AutomaticGainControl, NoiseSuppressor, build_processor
from media.audio.errors import AudioConfigError, AudioInputError
from tests.media.audio.simulated import GEOMETRY, array_recording

RATE, FRAME = 16000, 160


def pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


def frames(x: np.ndarray):
    x16 = pcm(x)
    return [x16[i:i + FRAME] for i in range(0, len(x16) - FRAME + 1, FRAME)]


def level_dbfs(x16: np.ndarray) -> float:
    x = np.asarray(x16, dtype=np.float64) / 32768
    return float(10 * np.log10(np.mean(x * x) + 1e-20))


def fan_noise(seconds: float, dbfs: float, seed: int = 5) -> np.ndarray:
    white = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    brown = np.convolve(white, np.ones(8) / 8, mode="same")        # a low-heavy hum
    return brown / np.sqrt(np.mean(brown ** 2)) * 10 ** (dbfs / 20)


def test_noise_suppressor_lowers_a_steady_fan_by_10_db():
    ns = NoiseSuppressor(FRAME)
    out = np.concatenate([ns.process(f) for f in frames(fan_noise(4, -45))])
    assert level_dbfs(out[2 * RATE:]) <= -45 - 10
    assert -60 < ns.noise_dbfs < -35          # the tracked floor is near the fan's level


def test_noise_suppressor_keeps_speech_level(room):
    speech = room["speech_like"](4, RATE, seed=21)                 # -26 dBFS when active
    noisy = speech + fan_noise(4, -50)
    ns = NoiseSuppressor(FRAME)
    out = np.concatenate([ns.process(f) for f in frames(noisy)]) / 32768
    a, b = 2 * RATE, 4 * RATE - FRAME
    kept = np.dot(out[a + FRAME:b + FRAME], speech[a:b]) / np.dot(speech[a:b], speech[a:b])
    assert 20 * np.log10(kept) >= -1.5
    # Between syllables only the fan is left: there it must be clearly lower.
    gaps = [i for i in range(a, b - FRAME, FRAME) if np.max(np.abs(speech[i:i + FRAME])) < 1e-4]
    assert len(gaps) >= 10
    fan_in = np.mean([np.mean(noisy[i:i + FRAME] ** 2) for i in gaps])
    fan_out = np.mean([np.mean(out[i + FRAME:i + 2 * FRAME] ** 2) for i in gaps])
    assert 10 * np.log10(fan_in / fan_out) >= 6.0


def test_agc_brings_a_quiet_talker_to_the_target(room):
    quiet = room["speech_like"](6, RATE, seed=22) * 10 ** (-20 / 20)  # -46 dBFS talker
    agc = AutomaticGainControl(target_dbfs=-26.0)
    out = [agc.process(f) for f in frames(quiet)]
    # Level over frames that carry speech (the gaps between syllables do not count).
    active = [o for f, o in zip(frames(quiet)[400:], out[400:]) if level_dbfs(f) > -60]
    speech_dbfs = 10 * np.log10(np.mean([10 ** (level_dbfs(o) / 10) for o in active]))
    assert speech_dbfs == pytest.approx(-26.0, abs=1.5)
    assert 15.0 <= agc.gain_db <= 20.0


def test_agc_never_clips_a_shout(room):
    shout = room["speech_like"](3, RATE, seed=23) * 10 ** (20 / 20)   # peaks far over full scale
    shout = np.clip(shout, -0.999, 0.999)
    agc = AutomaticGainControl()
    out = np.concatenate([agc.process(f) for f in frames(shout)])
    assert np.max(np.abs(out.astype(np.int32))) <= 32768 * 10 ** (-1 / 20) + 1
    assert agc.gain_db < -5.0


def test_processor_cancels_echo_through_its_render_and_capture_sides(room):
    far = room["speech_like"](8, RATE, seed=24)
    echo = np.convolve(far, room["room_response"](RATE, 20, 0.25, seed=25))[: len(far)]
    processor = build_processor(RATE, FRAME, stages=["aec", "ns"])
    out = []
    for played, heard in zip(frames(far), frames(echo)):
        processor.render(played)
        out.append(processor.capture(heard))
    out = np.concatenate(out)
    assert level_dbfs(pcm(echo)[5 * RATE:]) - level_dbfs(out[5 * RATE:]) >= 25.0
    status = processor.status()
    assert status["enabled"] == ["aec", "ns"]
    assert status["aec"]["reference_missing"] == 0 and status["aec"]["erle_db"] > 20


def test_processor_beamforms_an_array_and_reports_the_talker_direction(room):
    _, mics = array_recording(120.0, snr_db=15, seed=26)
    processor = build_processor(RATE, FRAME, geometry=GEOMETRY)
    x16 = np.clip(np.rint(mics * 32768), -32768, 32767).astype(np.int16)
    outs = [processor.capture(x16[i:i + FRAME]) for i in range(0, len(x16) - FRAME + 1, FRAME)]
    assert all(o.shape == (FRAME,) and o.dtype == np.int16 for o in outs)
    beam = processor.status()["beam"]
    assert abs((beam["azimuth_deg"] - 120.0 + 180) % 360 - 180) <= 10.0
    assert beam["confidence"] > 0.1


def test_a_disabled_stage_is_bypassed_and_can_come_back(room):
    quiet = pcm(room["speech_like"](1, RATE, seed=27) * 0.1)
    processor = build_processor(RATE, FRAME, stages=["agc"], disabled=["agc"])
    assert np.array_equal(processor.capture(quiet[:FRAME]), quiet[:FRAME])
    processor.set_enabled("agc", True)
    assert processor.status()["enabled"] == ["agc"]
    with pytest.raises(AudioConfigError, match="no stage 'ns' in this processor"):
        processor.set_enabled("ns", False)


def test_array_frames_reduce_to_the_first_mic_without_a_beam():
    processor = build_processor(RATE, FRAME, stages=["agc"], geometry=GEOMETRY, disabled=["agc"])
    frame = np.arange(FRAME * 4, dtype=np.int16).reshape(FRAME, 4)
    assert np.array_equal(processor.capture(frame), frame[:, 0])


@pytest.mark.parametrize("stages, message", [
    (["aec", "echo"], "unknown stage 'echo'; expected some of beam, aec, ns, agc"),
    (["ns", "ns"], "each stage at most once, got ns, ns"),
])
def test_bad_stage_lists_are_refused_by_name(stages, message):
    with pytest.raises(AudioConfigError, match=message):
        build_processor(RATE, FRAME, stages=stages)


def test_capture_frames_of_the_wrong_size_are_refused():
    processor = build_processor(RATE, FRAME, stages=["ns"])
    with pytest.raises(AudioInputError, match="capture frames must be 160 samples, got 100"):
        processor.capture(np.zeros(100, np.int16))
