"""Mic-array benchmark: DOA error and beamforming gain in simulated rooms.

    .venv/bin/python bench/array.py                 # needs the 'bench' extra and espeak-ng
    .venv/bin/python bench/array.py --trials 5 --snr 10

pyroomacoustics shoebox rooms (T60 0.2-0.8 s, corrected so the Sabine target is met by
image-source + ray-free simulation), a 4-mic circular array (the ReSpeaker/sim geometry,
32 mm radius) and a 4-mic linear array (4 cm pitch), one talker, one interfering talker
(6 dB below) and a pseudo-diffuse noise field (eight uncorrelated pink sources around the
room) at the given SNR at the array. Speech is espeak-ng, dry, 16 kHz.

Per trial: our SRP-PHAT DOA (media.audio.doa via the beamformer: its dominant talker)
against pyroomacoustics' own SRP-PHAT and MUSIC on the same recording; SI-SDR of each of
our beam methods (delay-and-sum as the baseline, fixed superdirective, adaptive MVDR) over
one mic, all on the same recording in the same run. The target part of the beam output
is the talker's images alone passed through the very weights the beam applied to the mix,
frame by frame (the beam is linear in its input for given weights), so the measure is
exact also for a beam that steers or adapts. What the beam does to the talker itself is
reported too: the level of that talker part against the talker at mic 1, and its PESQ-WB
with the talker at mic 1 as reference (4.6 = unchanged). Linear arrays are ambiguous
front/back: their DOA error is taken against the mirror image too.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# This file shares its name with the standard library's ``array`` (the issue names it so):
# drop bench/ from the import path, or scipy's ``import array`` would load this script.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
from media.audio.beamformer import Beamformer  # noqa: E402
from media.audio.stft import StreamingStft  # noqa: E402

try:
    import pyroomacoustics as pra
    import soundfile as sf
    from pesq import pesq
    from scipy.signal import resample_poly
except ImportError as exc:  # pragma: no cover - a benchmark, not a test
    raise SystemExit(f"bench/array.py needs the bench extra: pip install -e '.[bench]' ({exc})")

RATE, FRAME = 16000, 160
METHODS = ("delay-and-sum", "superdirective", "mvdr")
SENTENCES = [
    "Can everybody hear me clearly, or should I move closer to the microphone?",
    "Let's start with a quick update on the release schedule for next month.",
    "The software update fixed the crash, but the fan is still noisy.",
    "We should double check the translation before it goes to print.",
    "I think we should postpone the demo until the firmware is stable.",
    "Good morning everyone, thanks for joining the weekly planning call.",
]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+m5", "en-gb+f2"]
CIRCULAR = [(0.032, 0.0, 0.0), (0.0, 0.032, 0.0), (-0.032, 0.0, 0.0), (0.0, -0.032, 0.0)]
LINEAR = [(-0.06, 0.0, 0.0), (-0.02, 0.0, 0.0), (0.02, 0.0, 0.0), (0.06, 0.0, 0.0)]


def speech(text: str, voice: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(path), text],
                       check=True, timeout=30)
        x, rate = sf.read(str(path))
    x = resample_poly(x, RATE, rate)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def pink(n: int, rng) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
    x = np.fft.irfft(spec, n)
    return x / np.std(x)


def room_for(t60: float, rng):
    dims = np.array([rng.uniform(4.5, 8.0), rng.uniform(3.5, 6.0), rng.uniform(2.6, 3.1)])
    absorption, max_order = pra.inverse_sabine(t60, dims)
    return dims, absorption, min(max_order, 40)


def simulate(dims, absorption, max_order, centre, geometry, sources):
    """Images of each (signal, position) source at the mics: list of (mics, samples)."""
    mics = np.asarray(geometry).T + np.asarray(centre)[:, None]
    images = []
    for signal, position in sources:
        room = pra.ShoeBox(dims, fs=RATE, materials=pra.Material(absorption), max_order=max_order)
        room.add_source(position, signal=signal)
        room.add_microphone_array(mics)
        room.simulate()
        images.append(room.mic_array.signals[:, : len(signal)])
    return images


def place(centre, azimuth_deg, distance, height):
    rad = np.deg2rad(azimuth_deg)
    return [centre[0] + distance * np.cos(rad), centre[1] + distance * np.sin(rad), height]


def angle_error(estimate, truth, linear: bool) -> float:
    err = abs((estimate - truth + 180) % 360 - 180)
    if linear:                          # a line array cannot tell front from back
        err = min(err, abs((estimate - (360 - truth) + 180) % 360 - 180))
    return err


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    scale = np.dot(estimate, reference) / (np.dot(reference, reference) + 1e-20)
    target = scale * reference
    return float(10 * np.log10(np.sum(target ** 2) / (np.sum((estimate - target) ** 2) + 1e-20)))


def run_beam(geometry, mix: np.ndarray, talker: np.ndarray, method: str, loading=None):
    """Beam the mix; pass the talker's images through the same per-frame weights."""
    beam = Beamformer(geometry, RATE, FRAME, method=method, loading=loading)
    shadow = StreamingStft(FRAME, channels=len(geometry))
    pcm = np.clip(np.rint(mix.T * 16384), -32768, 32767).astype(np.int16)   # -6 dB headroom
    out, talker_out = [], []
    for i in range(0, len(pcm) - FRAME + 1, FRAME):
        out.append(beam.process(pcm[i:i + FRAME]))
        spectra = shadow.analyse(talker[:, i:i + FRAME] * 0.5)        # same scale as the pcm
        talker_out.append(shadow.synthesise(np.sum(beam.weights * spectra, axis=0)) * 2)
    return (beam, np.concatenate(out).astype(np.float64)[FRAME:] / 16384,
            np.concatenate(talker_out)[FRAME:])


def pra_doa(name: str, geometry, mix: np.ndarray) -> float:
    nfft = 512
    stft = np.array([pra.transform.stft.analysis(ch, nfft, nfft // 2).T for ch in mix])
    doa = pra.doa.algorithms[name](np.asarray(geometry)[:, :2].T, RATE, nfft, c=343.0, num_src=1)
    doa.locate_sources(stft, freq_range=[300.0, 3500.0])
    return float(np.rad2deg(doa.azimuth_recon[0]) % 360)


def trial(geometry, linear: bool, t60: float, snr_db: float, rng, loading=None):
    dims, absorption, order = room_for(t60, rng)
    centre = [dims[0] / 2 + rng.uniform(-0.5, 0.5), dims[1] / 2 + rng.uniform(-0.5, 0.5), 0.9]
    azimuth = float(rng.uniform(0, 180 if linear else 360))
    interferer_az = (azimuth + rng.uniform(60, 300)) % 360
    pick = rng.choice(len(SENTENCES), 2, replace=False)
    talker = speech(SENTENCES[pick[0]], VOICES[pick[0]])
    other = speech(SENTENCES[pick[1]], VOICES[pick[1]])
    n = min(len(talker), len(other), 4 * RATE)
    talker, other = talker[:n], other[:n]
    noise_sources = [(pink(n, rng), [rng.uniform(0.3, dims[0] - 0.3), rng.uniform(0.3, dims[1] - 0.3),
                                     rng.uniform(0.3, dims[2] - 0.3)]) for _ in range(8)]
    # Keep both talkers 0.3 m inside the walls from the (off-centre) array whatever the
    # azimuth (the room's half-width alone let some seeds, e.g. --seed 7, place one outside).
    to_wall = min(centre[0], dims[0] - centre[0], centre[1], dims[1] - centre[1]) - 0.3
    distance = float(rng.uniform(1.0, min(2.5, to_wall)))
    images = simulate(dims, absorption, order, centre, geometry,
                      [(talker, place(centre, azimuth, distance, 1.2)),
                       (other, place(centre, interferer_az, distance * 0.9, 1.2))] + noise_sources)
    target = images[0]
    level = np.sqrt(np.mean(target ** 2))
    interference = images[1] / np.sqrt(np.mean(images[1] ** 2)) * level * 10 ** (-6 / 20)
    diffuse = sum(images[2:])
    diffuse = diffuse / np.sqrt(np.mean(diffuse ** 2)) * level * 10 ** (-snr_db / 20)
    mix = target + interference + diffuse
    peak = np.max(np.abs(mix))
    mix, target = mix / peak * 0.9, target / peak * 0.9

    result = {"srp": angle_error(pra_doa("SRP", geometry, mix), azimuth, linear),
              "music": angle_error(pra_doa("MUSIC", geometry, mix), azimuth, linear)}
    for method in METHODS:
        beam, out, target_out = run_beam(geometry, mix, target, method,
                                         loading if method == "mvdr" else None)
        mic_talker = target[0, : len(out)]
        result["ours"] = angle_error(beam.talker_azimuth_deg, azimuth, linear)   # same for all
        result["sisdr_mic"] = si_sdr(mic_talker, mix[0, : len(out)])
        result[f"gain {method}"] = si_sdr(target_out, out) - result["sisdr_mic"]
        result[f"level {method}"] = 10 * np.log10(np.sum(target_out ** 2) / np.sum(mic_talker ** 2))
        result[f"pesq {method}"] = pesq(RATE, mic_talker, target_out, "wb")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=3, help="rooms per array and T60")
    ap.add_argument("--snr", type=float, default=10.0, help="diffuse-noise SNR at the array, dB")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--loading", type=float, default=None,
                    help="diagonal loading of the MVDR beam (default: the beamformer's, 0.01)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print("SI-SDR gain over mic 1 / talker level vs mic 1 / talker PESQ-WB, per method: "
          "delay-and-sum, superdirective, MVDR (medians)")
    print("| array | T60 s | DOA err med ° ours | SRP-PHAT (pra) | MUSIC (pra) | SI-SDR mic dB | "
          "gain DS / SD / MVDR dB | talker level DS / SD / MVDR dB | talker PESQ DS / SD / MVDR |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for name, geometry, linear in (("circular 4", CIRCULAR, False), ("linear 4", LINEAR, True)):
        for t60 in (0.2, 0.4, 0.6, 0.8):
            rows = [trial(geometry, linear, t60, args.snr, rng, args.loading) for _ in range(args.trials)]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            per = {kind: " / ".join(f"{med[f'{kind} {m}']:{fmt}}" for m in METHODS)
                   for kind, fmt in (("gain", "+.1f"), ("level", "+.1f"), ("pesq", ".2f"))}
            print(f"| {name} | {t60:.1f} | {med['ours']:.1f} | {med['srp']:.1f} | {med['music']:.1f} | "
                  f"{med['sisdr_mic']:.1f} | {per['gain']} | {per['level']} | {per['pesq']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
