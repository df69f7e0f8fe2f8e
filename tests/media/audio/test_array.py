"""Beamformer and DOA on a simulated 4-mic array: plane waves, reflections, sensor noise."""
from __future__ import annotations

import numpy as np
import pytest

from media.audio import Beamformer, build_processor
from media.audio.errors import AudioConfigError
from media.audio.stft import StreamingStft
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
    beamformer = Beamformer(GEOMETRY, RATE, FRAME)
    run_beamformer(beamformer, mics)
    assert angle_error(beamformer.talker_azimuth_deg, azimuth) <= 10.0
    assert angle_error(beamformer.steering_deg, azimuth) <= 10.0
    assert beamformer.confidence > 0.1


def shadow_outputs(beamformer, mics: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """Beam ``mics``; pass each part through the same per-frame weights (the beam is linear
    in its input for given weights), so talker and noise can be measured apart."""
    pcm = np.clip(np.rint(mics * 32768), -32768, 32767).astype(np.int16)
    stfts = [StreamingStft(FRAME, channels=mics.shape[1]) for _ in parts]
    outs = [[] for _ in parts]
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        beamformer.process(pcm[i:i + FRAME])
        for stft, part, out in zip(stfts, parts, outs):
            spectra = stft.analyse(part[i:i + FRAME].T)
            out.append(stft.synthesise(np.sum(beamformer.weights * spectra, axis=0)))
    return [np.concatenate(out) for out in outs]


def test_beam_raises_the_talker_over_uncorrelated_noise(room):
    clean, noisy = array_recording(60.0, snr_db=5, seed=7)
    beamformer = Beamformer(GEOMETRY, RATE, FRAME, method="delay-and-sum")
    talker_out, noise_out = shadow_outputs(beamformer, noisy, [clean, noisy - clean])
    assert angle_error(beamformer.steering_deg, 60.0) <= 10.0
    snr_in = 10 * np.log10(np.sum(clean[:, 0] ** 2) / np.sum((noisy - clean)[:, 0] ** 2))
    snr_out = 10 * np.log10(np.sum(talker_out ** 2) / np.sum(noise_out ** 2))
    assert snr_out - snr_in >= 4.0                        # 4 mics: 6 dB in theory


@pytest.mark.parametrize("mismatch_db", [0.0, 1.0])
def test_mvdr_rejects_an_interfering_talker_and_keeps_the_talker(room, mismatch_db):
    """A second talker from the side, louder than the first: delay-and-sum on this small
    array passes it almost unchanged; MVDR learns its direction while the talker pauses.
    Real capsules differ in sensitivity (MEMS: about ±1 dB): the white-noise-gain limit
    keeps the MVDR from cancelling a talker who no longer matches the steering exactly."""
    talker = room["speech_like"](6, RATE, seed=3)
    other = room["speech_like"](6, RATE, seed=4) * 2.0
    capsules = 10 ** (np.array([1.0, -1.0, -0.5, 0.75]) * mismatch_db / 20)
    clean = plane_wave(talker, 90.0, GEOMETRY) * capsules
    interference = plane_wave(other, 200.0, GEOMETRY) * capsules
    noise = np.random.default_rng(5).standard_normal(clean.shape) * 10 ** (-60 / 20)
    mics = clean + interference + noise
    rejection = {}
    for method in ("delay-and-sum", "mvdr"):
        beamformer = Beamformer(GEOMETRY, RATE, FRAME, fixed_azimuth_deg=90.0, method=method)
        talker_out, other_out = shadow_outputs(beamformer, mics, [clean, interference + noise])
        half = len(talker_out) // 2                       # judged once it has learned
        rejection[method] = 10 * np.log10(
            np.sum(talker_out[half:] ** 2) / np.sum(other_out[half:] ** 2)
            * np.sum(interference[half:, 0] ** 2) / np.sum(clean[half:, 0] ** 2))
        reference = talker[half - FRAME:len(talker_out) - FRAME]     # one frame of latency
        part = talker_out[half:]
        scale = np.dot(part, reference) / np.dot(reference, reference)
        sdr = 10 * np.log10(np.sum((scale * reference) ** 2)
                            / np.sum((part - scale * reference) ** 2))
        assert 20 * np.log10(scale) >= -2.0, method          # the talker keeps its level
        assert sdr >= 18.0, method                           # and its shape
    assert rejection["delay-and-sum"] < 3.0
    assert rejection["mvdr"] >= rejection["delay-and-sum"] + 4.0


def test_rejects_an_unknown_method():
    with pytest.raises(ValueError, match=r"method must be one of mvdr, delay-and-sum, "
                                         r"superdirective, got 'gsc'"):
        Beamformer(GEOMETRY, RATE, FRAME, method="gsc")


def test_rejects_frames_that_do_not_match_the_geometry():
    beamformer = Beamformer(GEOMETRY, RATE, FRAME)
    with pytest.raises(ValueError, match=r"frames must be \(samples, 4\).*got \(160, 2\)"):
        beamformer.process(np.zeros((FRAME, 2), np.int16))


@pytest.mark.parametrize("method", ["delay-and-sum", "superdirective", "mvdr"])
def test_a_talker_in_the_beam_passes_undistorted(room, method):
    talker = room["speech_like"](2, RATE, seed=41)
    mics = plane_wave(talker, 75.0, GEOMETRY)
    mics += np.random.default_rng(2).standard_normal(mics.shape) * 10 ** (-70 / 20)
    out = run_beamformer(Beamformer(GEOMETRY, RATE, FRAME, fixed_azimuth_deg=75.0,
                                    method=method), mics)
    # The array centre hears the talker at time 0; the beam adds one frame of latency.
    target = talker[: len(out) - FRAME]
    error = out[FRAME:] - target
    assert 10 * np.log10(np.sum(target ** 2) / np.sum(error ** 2)) >= 25.0


def test_the_pipeline_runs_the_configured_beam_and_switches_it_off(room):
    _, mics = array_recording(135.0, snr_db=10, seed=9)
    pcm = np.clip(np.rint(mics * 32768), -32768, 32767).astype(np.int16)
    processor = build_processor(RATE, FRAME, stages=["beam", "agc"], geometry=GEOMETRY,
                                beam_method="mvdr", disabled=["agc"])
    assert processor.stages[0].beamformer.method == "mvdr"
    outs = [processor.capture(pcm[i:i + FRAME]) for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    assert all(o.shape == (FRAME,) for o in outs)
    assert angle_error(processor.status()["beam"]["talker_azimuth_deg"], 135.0) <= 10.0
    processor.set_enabled("beam", False)              # off: the first mic passes unchanged
    np.testing.assert_array_equal(processor.capture(pcm[:FRAME]), pcm[:FRAME, 0])
    assert processor.status()["enabled"] == []


def test_an_unknown_beam_in_the_config_names_the_key():
    with pytest.raises(AudioConfigError, match=r"audio.beam_method: unknown beam 'gsc'; "
                                               r"expected one of mvdr, delay-and-sum"):
        build_processor(RATE, FRAME, geometry=GEOMETRY, beam_method="gsc")
