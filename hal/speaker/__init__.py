"""Speakers: 16-bit PCM playback through ALSA or a simulation.

A backend provides:
- ``__init__(profile)`` that opens the device (blocking) or raises DeviceUnavailable;
- ``_write(samples)`` (blocking) for an int16 array of shape (frames, channels);
- ``_close()`` (blocking; drains what was written).
Defaults: ``write()`` checks the shape, adapts mono/stereo and tracks the level played;
``play()`` does the same from the event loop through a thread.
"""
from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from hal.device import Device
from hal.profile import SpeakerProfile
from hal.registry import open_backend


class Speaker(Device):
    kind = "speaker"

    def __init__(self, profile: SpeakerProfile) -> None:
        super().__init__()
        self.profile = profile
        self.sample_rate = profile.sample_rate
        self.channels = profile.channels
        self.period_frames = profile.sample_rate * profile.period_ms // 1000
        self.frames_written = 0
        self.underruns = 0
        self.last_level_dbfs = float("-inf")

    def _write(self, samples: np.ndarray) -> None:
        raise NotImplementedError

    def write(self, samples: np.ndarray) -> None:
        """Play int16 samples (frames,) or (frames, channels), blocking until queued.

        Mono is copied to every channel; more channels than the speaker has is an error.
        """
        self._check_open()
        samples = np.asarray(samples)
        if samples.dtype != np.int16:
            raise ValueError(f"speaker: samples must be int16, got {samples.dtype}")
        if samples.ndim == 1:
            samples = samples[:, None]
        if samples.shape[1] == 1 and self.channels > 1:
            samples = np.repeat(samples, self.channels, axis=1)
        if samples.shape[1] != self.channels:
            raise ValueError(f"speaker: got {samples.shape[1]} channels, the device has {self.channels}")
        if len(samples):
            rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
            self.last_level_dbfs = 20 * np.log10(rms / 32768) if rms > 0 else float("-inf")
        self._write(np.ascontiguousarray(samples))
        self.frames_written += len(samples)

    async def play(self, samples: np.ndarray) -> None:
        """``write()`` from the event loop, in a worker thread."""
        await asyncio.to_thread(self.write, samples)

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(sample_rate=self.sample_rate, channels=self.channels,
                      frames=self.frames_written, underruns=self.underruns,
                      level_dbfs=round(float(self.last_level_dbfs), 1) if np.isfinite(self.last_level_dbfs) else None)
        return status


def open_speaker(profile: SpeakerProfile) -> Speaker:
    """Open the profile's speaker (blocking). Raises DeviceUnavailable with the reason."""
    return open_backend("speaker", profile.backend, lambda cls: cls(profile))
