"""``roombox audio process`` on real WAV files in a temporary directory."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from hal.wav import read_wav, write_wav
from media.audio import cli
from tests.media.audio.simulated import GEOMETRY, array_recording

RATE = 16000


def roombox_audio(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="roombox")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audio", "process", *argv])
    return args.func(args)


def pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 32768), -32768, 32767).astype(np.int16)


@pytest.fixture
def echo_files(tmp_path, room):
    far = room["speech_like"](6, RATE, seed=31)
    echo = np.convolve(far, room["room_response"](RATE, 20, 0.25, seed=32))[: len(far)]
    write_wav(tmp_path / "ref.wav", pcm(far), RATE)
    write_wav(tmp_path / "mic.wav", pcm(echo), RATE)
    return tmp_path


def test_process_cancels_echo_and_reports_erle_and_timing(echo_files, capsys):
    d = echo_files
    status = roombox_audio(["--mic", str(d / "mic.wav"), "--ref", str(d / "ref.wav"),
                            "--out", str(d / "out.wav")])
    assert status == 0
    out, rate = read_wav(d / "out.wav")
    mic, _ = read_wav(d / "mic.wav")
    assert rate == RATE and out.shape == mic.shape
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert printed["stages"] == "aec,ns,agc"
    assert float(printed["erle_db"]) >= 15.0
    assert 0 < float(printed["real_time_factor"]) < 1.0


def test_multichannel_mic_goes_through_the_beam_of_the_profile(tmp_path, room, capsys):
    _, mics = array_recording(200.0, snr_db=20, seed=33)
    write_wav(tmp_path / "array.wav", pcm(mics), RATE)
    status = roombox_audio(["--mic", str(tmp_path / "array.wav"), "--out", str(tmp_path / "o.wav"),
                            "--stages", "ns", "--profile", "sim"])
    assert status == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert printed["stages"] == "beam,ns"
    assert abs((float(printed["doa_azimuth_deg"]) - 200.0 + 180) % 360 - 180) <= 10.0
    assert read_wav(tmp_path / "o.wav")[0].shape[1] == 1


def test_the_beam_is_chosen_on_the_command_line(tmp_path, capsys):
    _, mics = array_recording(200.0, snr_db=20, seed=33)
    write_wav(tmp_path / "array.wav", pcm(mics), RATE)
    status = roombox_audio(["--mic", str(tmp_path / "array.wav"), "--out", str(tmp_path / "o.wav"),
                            "--stages", "beam", "--profile", "sim", "--beam", "mvdr"])
    assert status == 0
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert printed["stages"] == "beam" and printed["beam"] == "mvdr"
    assert abs((float(printed["doa_azimuth_deg"]) - 200.0 + 180) % 360 - 180) <= 10.0
    out, _ = read_wav(tmp_path / "o.wav")
    assert 20 * np.log10(np.std(out) / np.std(pcm(mics)[:, 0])) > -6.0    # the talker is there


def test_wrong_rate_is_refused_by_name(tmp_path, capsys):
    write_wav(tmp_path / "mic.wav", np.zeros(4410, np.int16), 44100)
    status = roombox_audio(["--mic", str(tmp_path / "mic.wav"), "--out", str(tmp_path / "o.wav"),
                            "--stages", "ns"])
    assert status == 2
    assert "mic.wav' is 44100 Hz; expected one of 16000, 48000 Hz" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_reference_with_wrong_channels_is_refused(echo_files, capsys):
    d = echo_files
    write_wav(d / "stereo.wav", np.zeros((1600, 2), np.int16), RATE)
    status = roombox_audio(["--mic", str(d / "mic.wav"), "--ref", str(d / "stereo.wav"),
                            "--out", str(d / "o.wav")])
    assert status == 2
    assert "stereo.wav' has 2 channel(s); expected 1" in capsys.readouterr().err


def test_reference_at_another_rate_is_refused(echo_files, capsys):
    d = echo_files
    write_wav(d / "ref48.wav", np.zeros(4800, np.int16), 48000)
    status = roombox_audio(["--mic", str(d / "mic.wav"), "--ref", str(d / "ref48.wav"),
                            "--out", str(d / "o.wav")])
    assert status == 2
    assert "ref48.wav' is 48000 Hz; expected 16000 Hz" in capsys.readouterr().err


def test_truncated_wav_is_refused(echo_files, capsys):
    d = echo_files
    data = (d / "mic.wav").read_bytes()
    (d / "cut.wav").write_bytes(data[: len(data) // 2 + 1])
    status = roombox_audio(["--mic", str(d / "cut.wav"), "--ref", str(d / "ref.wav"),
                            "--out", str(d / "o.wav")])
    assert status == 2
    assert "cut.wav" in (err := capsys.readouterr().err) and "truncated" in err


def test_multichannel_without_a_profile_is_refused(tmp_path, capsys):
    write_wav(tmp_path / "quad.wav", np.zeros((1600, 4), np.int16), RATE)
    status = roombox_audio(["--mic", str(tmp_path / "quad.wav"), "--out", str(tmp_path / "o.wav"),
                            "--stages", "ns"])
    assert status == 2
    assert "quad.wav' has 4 channels; give --profile with a 4-mic geometry" in capsys.readouterr().err


def test_aec_without_reference_is_refused(echo_files, capsys):
    d = echo_files
    status = roombox_audio(["--mic", str(d / "mic.wav"), "--out", str(d / "o.wav")])
    assert status == 2
    assert "stage aec needs --ref" in capsys.readouterr().err


def test_geometry_of_the_sim_profile_matches_the_test_array():
    from hal.profile import load_profile

    assert sorted(load_profile("sim").microphone.geometry) == sorted(GEOMETRY)
