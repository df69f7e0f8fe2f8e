"""``roombox audio process``: run recorded WAVs through the audio stages, offline.

For integrators and support: feed a microphone recording and what the loudspeaker played
at the same time, get the processed signal, an ERLE estimate and the processing time. A
multi-channel microphone file goes through the beamformer with the array geometry of
``--profile`` and the talker's direction is printed too.

    roombox audio process --mic mic.wav --ref ref.wav --out out.wav [--stages aec,ns,agc]
                          [--profile pi4-respeaker4]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hal.errors import ProfileError
from hal.profile import load_profile
from hal.wav import WavError, read_wav, write_wav
from media.audio.aec import SUPPORTED
from media.audio.beamformer import METHODS as BEAM_METHODS
from media.audio.errors import AudioError, AudioInputError
from media.audio.stages import STAGE_NAMES, build_processor

DEFAULT_STAGES = "aec,ns,agc"
FAR_ACTIVE_DBFS = -50.0       # reference frames above this count for the ERLE estimate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audio", help="offline audio processing", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="audio_command", metavar="COMMAND", required=True)
    process = sub.add_parser("process", help="echo-cancel / denoise / level WAV files")
    process.add_argument("--mic", required=True, help="microphone WAV (16-bit, 16 or 48 kHz)")
    process.add_argument("--ref", help="loudspeaker reference WAV, mono, same rate (needed by aec)")
    process.add_argument("--out", required=True, help="where to write the processed mono WAV")
    process.add_argument("--stages", default=DEFAULT_STAGES,
                         help=f"comma-separated, in order, from {','.join(STAGE_NAMES)} "
                              f"(default {DEFAULT_STAGES}; beam is added for a multi-channel mic)")
    process.add_argument("--profile", help="hardware profile whose microphone geometry the "
                                           "beamformer uses (multi-channel mic files)")
    process.add_argument("--beam", choices=BEAM_METHODS, default="delay-and-sum",
                         help="beam for a multi-channel mic (default delay-and-sum; mvdr rejects "
                              "more noise and other talkers but colours the talker)")
    process.set_defaults(func=process_files)


def process_files(args: argparse.Namespace) -> int:
    """Entry point of ``roombox audio process``; returns the exit status."""
    try:
        report = run(args.mic, args.ref, args.out, stages=args.stages, profile=args.profile,
                     beam=args.beam)
    except (WavError, AudioError, ProfileError) as exc:
        print(f"audio: {exc}", file=sys.stderr)
        return 2
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


def run(mic_path: str, ref_path: str | None, out_path: str, *, stages: str = DEFAULT_STAGES,
        profile: str | None = None, beam: str = "delay-and-sum") -> dict:
    """Process the files; return a report (ERLE estimate, timing, DOA). Raises WavError,
    AudioError or ProfileError with a message naming the file or option at fault."""
    mic, rate = read_wav(mic_path)
    if rate not in SUPPORTED:
        raise AudioInputError(f"'{mic_path}' is {rate} Hz; expected one of "
                              f"{', '.join(str(r) for r in SUPPORTED)} Hz")
    order = [s.strip() for s in stages.split(",") if s.strip()]
    geometry = _geometry(mic_path, mic.shape[1], profile)
    if geometry and "beam" not in order:
        order.insert(0, "beam")
    ref = _reference(ref_path, rate, len(mic)) if "aec" in order else None
    frame = SUPPORTED[rate]
    processor = build_processor(rate, frame, stages=order, geometry=geometry, beam_method=beam)

    count = len(mic) // frame
    out = np.zeros(count * frame, dtype=np.int16)
    started = time.process_time()
    for i in range(count):
        span = slice(i * frame, (i + 1) * frame)
        if ref is not None:
            processor.render(ref[span])
        out[span] = processor.capture(mic[span] if mic.shape[1] > 1 else mic[span, 0])
    cpu_s = time.process_time() - started
    write_wav(out_path, out, rate)

    audio_s = count * frame / rate
    report = {"stages": ",".join(processor.status()["enabled"]), "audio_s": round(audio_s, 2),
              "cpu_s": round(cpu_s, 3), "real_time_factor": round(cpu_s / max(audio_s, 1e-9), 4)}
    if ref is not None:
        report["erle_db"] = _erle_estimate(mic[: count * frame, 0], out, ref[: count * frame], frame)
    beam_status = processor.status().get("beam")
    if beam_status:
        report["beam"] = beam
        report["doa_azimuth_deg"] = beam_status["azimuth_deg"]
        report["doa_confidence"] = beam_status["confidence"]
    return report


def _geometry(mic_path: str, channels: int, profile: str | None):
    if channels == 1:
        return ()
    if profile is None:
        raise AudioInputError(f"'{mic_path}' has {channels} channels; give --profile with a "
                              f"{channels}-mic geometry, or a mono file")
    geometry = load_profile(profile).microphone.geometry
    if len(geometry) != channels:
        raise AudioInputError(f"'{mic_path}' has {channels} channels but profile {profile!r} "
                              f"has a geometry for {len(geometry)} mics; expected one per channel")
    return geometry


def _reference(ref_path: str | None, rate: int, length: int) -> np.ndarray:
    if ref_path is None:
        raise AudioInputError("stage aec needs --ref (what the loudspeaker played); "
                              "give it or leave aec out of --stages")
    ref, _ = read_wav(ref_path, sample_rate=rate, channels=1)
    ref = ref[:, 0]
    if len(ref) < length:          # the far end went quiet before the recording ended
        ref = np.concatenate([ref, np.zeros(length - len(ref), dtype=np.int16)])
    return ref[:length]


def _erle_estimate(mic: np.ndarray, out: np.ndarray, ref: np.ndarray, frame: int) -> float | None:
    """Mic over output energy on frames where the far end played (near-end speech there
    makes it an underestimate). The output lags by the processing latency; over whole
    sentences that shift does not matter."""
    frames = len(out) // frame
    shape = (frames, frame)
    ref_f = ref[: frames * frame].astype(np.float64).reshape(shape) / 32768
    active = 10 * np.log10(np.mean(ref_f ** 2, axis=1) + 1e-20) > FAR_ACTIVE_DBFS
    if not active.any():
        return None
    m = mic[: frames * frame].astype(np.float64).reshape(shape)[active]
    o = out.astype(np.float64).reshape(shape)[active]
    return round(float(10 * np.log10((np.sum(m ** 2) + 1e-9) / (np.sum(o ** 2) + 1e-9))), 1)
