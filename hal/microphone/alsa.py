"""ALSA capture through pyalsaaudio: USB and HAT mic arrays, any channel count."""
from __future__ import annotations

import logging

import numpy as np

from hal.alsa import EPIPE, open_pcm, reason
from hal.errors import DeviceUnavailable
from hal.microphone import Microphone
from hal.profile import MicrophoneProfile

log = logging.getLogger("roombox.hal")


class AlsaMicrophone(Microphone):
    """Interleaved S16_LE capture; overruns are counted and capture goes on."""

    def __init__(self, profile: MicrophoneProfile) -> None:
        super().__init__(profile)
        import alsaaudio

        self._alsa = alsaaudio
        self._pcm = open_pcm("capture", profile.device, self.sample_rate, self.channels, self.period_frames)
        self._pending = bytearray()
        self._bytes_per_period = self.period_frames * self.channels * 2

    def _read_period(self) -> np.ndarray:
        while len(self._pending) < self._bytes_per_period:
            try:
                count, data = self._pcm.read()
            except self._alsa.ALSAAudioError as exc:
                raise DeviceUnavailable(f"alsa: capture '{self.profile.device}' failed ({reason(exc)})") from None
            if count == -EPIPE:
                # pyalsaaudio has already re-prepared the stream; the lost samples are gone.
                self.overruns += 1
                log.warning("microphone: overrun on '%s' (%d so far)", self.profile.device, self.overruns)
                continue
            if count < 0:
                raise DeviceUnavailable(f"alsa: capture '{self.profile.device}' failed (error {-count})")
            self._pending += data
        period = bytes(self._pending[: self._bytes_per_period])
        del self._pending[: self._bytes_per_period]
        return np.frombuffer(period, dtype="<i2").reshape(self.period_frames, self.channels)

    def _close(self) -> None:
        self._pcm.close()

    def status(self):
        status = super().status()
        status["device"] = self.profile.device
        return status

