"""Real-time factor of the echo canceller alone (no resamplers), optionally against an older
commit's canceller in the same process, runs alternating. From /work/main:

    .venv/bin/python -m bench.aec_rtf                       # this tree, 48 kHz
    .venv/bin/python -m bench.aec_rtf --against HEAD~3      # old and new alternating
    .venv/bin/python -m bench.aec_rtf --full-band --rate 16000

(``-m``, not the path: bench/array.py would shadow the standard library's ``array``.)

Synthetic echo: gated white noise as the far end (band-limited to 7.6 kHz, a 16 kHz call
played at 48 kHz, unless ``--full-band``), a 0.25 s exponentially decaying random room
response, near-end bursts and a little noise. RTF = CPU seconds (time.process_time) per
second of audio; the best of ``--runs`` is what counts on a shared machine. The older
canceller is read with ``git show`` into a temporary package (its modules' imports
rewritten), so both live in one process.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve, firwin, lfilter

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("aec", "kalman_filter", "suppressor", "drift", "stft", "noise", "errors")


def signals(rate: int, seconds: float, full_band: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    n = int(seconds * rate)

    def gated(on_share: float, level: float) -> np.ndarray:
        gate = np.repeat(rng.random(int(seconds * 10) + 1) < on_share, rate // 10)[:n]
        x = rng.standard_normal(n) * gate
        if not full_band:
            x = lfilter(firwin(255, 7600, fs=rate), 1.0, x) if rate > 16000 else x
        return x * level

    far = gated(0.7, 3000.0)
    t = np.arange(int(0.25 * rate)) / rate
    room = rng.standard_normal(len(t)) * np.exp(-t / 0.05) * 0.05
    room[: int(0.01 * rate)] = 0.0
    mic = fftconvolve(far, room)[:n] + gated(0.3, 300.0) + rng.standard_normal(n) * 3.0
    return _pcm(mic), _pcm(far)


def _pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def old_canceller(rev: str, into: Path):
    """EchoCanceller class of commit ``rev``, imported as package ``aec_<rev>``."""
    name = "aec_" + "".join(c if c.isalnum() else "_" for c in rev)
    pkg = into / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module in MODULES:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:media/audio/{module}.py"],
                                check=True, capture_output=True, text=True).stdout
        (pkg / f"{module}.py").write_text(source.replace("from media.audio.", f"from {name}."))
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{name}.aec").EchoCanceller


def rtf(canceller_class, rate: int, mic: np.ndarray, ref: np.ndarray) -> float:
    frame = rate // 100
    canceller = canceller_class(rate, frame)
    start = time.process_time()
    for i in range(0, len(mic) - frame + 1, frame):
        canceller.process(mic[i:i + frame], ref[i:i + frame])
    return (time.process_time() - start) / (len(mic) / rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=48000, choices=(16000, 48000))
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--full-band", action="store_true", help="far end not band-limited")
    ap.add_argument("--against", metavar="REV", help="also time this commit's canceller")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from media.audio import EchoCanceller

    mic, ref = signals(args.rate, args.seconds, args.full_band)
    with tempfile.TemporaryDirectory() as tmp:
        candidates = {"this tree": EchoCanceller}
        if args.against:
            candidates = {args.against: old_canceller(args.against, Path(tmp)), **candidates}
        times: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(args.runs):
            for name, cls in candidates.items():
                times[name].append(rtf(cls, args.rate, mic, ref))
    print(f"{args.rate} Hz, {args.seconds:g} s, {'full-band' if args.full_band else 'band-limited'}"
          f" far end, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("| canceller | RTF best | runs |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {min(values):.4f} | {' / '.join(f'{v:.4f}' for v in values)} |")


if __name__ == "__main__":
    main()
