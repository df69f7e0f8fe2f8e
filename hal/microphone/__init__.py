"""Microphone arrays: N channels of 16-bit PCM in fixed periods, from ALSA or a simulation.

A backend provides:
- ``__init__(profile)`` that opens the device (blocking) or raises DeviceUnavailable;
- ``_read_period() -> numpy.ndarray`` (blocking) of shape (period_frames, channels), int16;
- ``_close()`` (blocking).
Defaults: ``read()`` counts periods; ``periods()`` runs reads in a thread and yields them on
the event loop. ``geometry`` holds the mic positions (metres) from the profile.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

import numpy as np

from hal.device import Device, ThreadedReader
from hal.profile import MicrophoneProfile
from hal.registry import open_backend


class Microphone(Device):
    """A capture device delivering int16 periods of ``period_frames`` x ``channels``."""

    kind = "microphone"

    def __init__(self, profile: MicrophoneProfile) -> None:
        super().__init__()
        self.profile = profile
        self.sample_rate = profile.sample_rate
        self.channels = profile.channels
        self.period_frames = profile.sample_rate * profile.period_ms // 1000
        self.geometry = profile.geometry
        self.periods_read = 0
        self.overruns = 0
        self.reader: ThreadedReader | None = None

    def _read_period(self) -> np.ndarray | None:
        raise NotImplementedError

    def read(self) -> np.ndarray | None:
        """One period (blocking); None at the end of a finite source."""
        self._check_open()
        data = self._read_period()
        if data is not None:
            self.periods_read += 1
        return data

    async def periods(self, max_queue: int = 50) -> AsyncIterator[np.ndarray]:
        """Periods as they are captured; a slow consumer loses the oldest (counted)."""
        self._check_open()
        self.reader = self._reader(f"mic-{self.backend}", self.read, max_queue=max_queue)
        async for period in self.reader:
            yield period

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(sample_rate=self.sample_rate, channels=self.channels,
                      periods=self.periods_read, overruns=self.overruns,
                      dropped=self.reader.dropped if self.reader else 0)
        return status


def open_microphone(profile: MicrophoneProfile) -> Microphone:
    """Open the profile's microphone (blocking). Raises DeviceUnavailable with the reason."""
    return open_backend("microphone", profile.backend, lambda cls: cls(profile))
