"""Reading and writing 16-bit PCM WAV files with errors that say what is wrong."""
from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np

from hal.errors import HalError


class WavError(HalError, ValueError):
    """A WAV file is not what was expected (format, rate, channels, truncated)."""


def read_wav(path: str | Path, *, sample_rate: int | None = None,
             channels: int | None = None) -> tuple[np.ndarray, int]:
    """Return (int16 samples shaped (frames, channels), sample rate).

    Raises WavError naming the file, what it holds and what was expected.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            width, rate, count, nframes = (wav.getsampwidth(), wav.getframerate(),
                                           wav.getnchannels(), wav.getnframes())
            data = wav.readframes(nframes)
    except FileNotFoundError:
        raise WavError(f"wav: '{path}' does not exist") from None
    except (wave.Error, EOFError) as exc:
        raise WavError(f"wav: '{path}' is not a readable WAV file ({exc or 'truncated header'})") from None
    if width != 2:
        raise WavError(f"wav: '{path}' has {8 * width}-bit samples; expected 16-bit PCM")
    if sample_rate is not None and rate != sample_rate:
        raise WavError(f"wav: '{path}' is {rate} Hz; expected {sample_rate} Hz")
    if channels is not None and count != channels:
        raise WavError(f"wav: '{path}' has {count} channel(s); expected {channels}")
    if len(data) != nframes * count * 2:
        raise WavError(f"wav: '{path}' is truncated: header says {nframes} frames, "
                       f"file holds {len(data) // (2 * count)}")
    return np.frombuffer(data, dtype="<i2").reshape(-1, count).astype(np.int16), rate


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 samples (frames,) or (frames, channels) atomically (temp file, fsync, rename)."""
    path = Path(path)
    samples = np.asarray(samples, dtype=np.int16)
    if samples.ndim == 1:
        samples = samples[:, None]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as raw:
            with wave.open(raw, "wb") as wav:
                wav.setnchannels(samples.shape[1])
                wav.setsampwidth(2)
                wav.setframerate(sample_rate)
                wav.writeframes(samples.astype("<i2").tobytes())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
