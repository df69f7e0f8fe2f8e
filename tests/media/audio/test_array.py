"""Beamformer and DOA on a simulated 4-mic array: plane waves, reflections, sensor noise."""
from __future__ import annotations

import numpy as np
import pytest

from media.audio import DelayAndSumBeamformer
from tests.media.audio.simulated import GEOMETRY, array_recording, plane_wave

RATE, FRAME = 16000, 160


def run_beamformer(beamformer, mics: np.ndarray) -> np.ndarray:
    pcm = np.clip(np.rint(mics * 32768), -32768, 32767).astype(np.int16)
    out = [beamformer.process(pcm[i:i + FRAME]) for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    return np.concatenate(out) / 32768


def angle_error(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


@pytest.mark.parametrize("azimuth", [30.0, 135.0, 250.0, 333.0])
def test_doa_within_10_degrees_on_a_simulated_array(room, azimuth):
    _, mics = array_recording(azimuth, snr_db=10, seed=int(azimuth))
    beamformer = DelayAndSumBeamformer(GEOMETRY, RATE, FRAME)
    run_beamformer(beamformer, mics)
    assert angle_error(beamformer.azimuth_deg, azimuth) <= 10.0
    assert angle_error(beamformer.steering_deg, azimuth) <= 10.0
    assert beamformer.confidence > 0.1


def test_beam_raises_the_talker_over_uncorrelated_noise(room):
    clean, noisy = array_recording(60.0, snr_db=5, seed=7)
    steered = DelayAndSumBeamformer(GEOMETRY, RATE, FRAME)
    run_beamformer(steered, noisy)
    assert angle_error(steered.steering_deg, 60.0) <= 10.0
    # The beam is linear for a fixed steering: pass talker and noise through it apart.
    talker_out = run_beamformer(DelayAndSumBeamformer(
        GEOMETRY, RATE, FRAME, fixed_azimuth_deg=steered.steering_deg), clean)
    noise_out = run_beamformer(DelayAndSumBeamformer(
        GEOMETRY, RATE, FRAME, fixed_azimuth_deg=steered.steering_deg), noisy - clean)
    snr_in = 10 * np.log10(np.sum(clean[:, 0] ** 2) / np.sum((noisy - clean)[:, 0] ** 2))
    snr_out = 10 * np.log10(np.sum(talker_out ** 2) / np.sum(noise_out ** 2))
    assert snr_out - snr_in >= 4.0                        # 4 mics: 6 dB in theory


def test_rejects_frames_that_do_not_match_the_geometry():
    beamformer = DelayAndSumBeamformer(GEOMETRY, RATE, FRAME)
    with pytest.raises(ValueError, match=r"frames must be \(samples, 4\).*got \(160, 2\)"):
        beamformer.process(np.zeros((FRAME, 2), np.int16))


@pytest.mark.parametrize("loading", [None, 0.01])
def test_a_talker_in_the_beam_passes_undistorted(room, loading):
    talker = room["speech_like"](2, RATE, seed=41)
    mics = plane_wave(talker, 75.0, GEOMETRY)
    out = run_beamformer(DelayAndSumBeamformer(GEOMETRY, RATE, FRAME, fixed_azimuth_deg=75.0,
                                               loading=loading), mics)
    # The array centre hears the talker at time 0; the beam adds one frame of latency.
    target = talker[: len(out) - FRAME]
    error = out[FRAME:] - target
    assert 10 * np.log10(np.sum(target ** 2) / np.sum(error ** 2)) >= 25.0
