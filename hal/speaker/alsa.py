"""ALSA playback through pyalsaaudio."""
from __future__ import annotations

import logging

import numpy as np

from hal.errors import DeviceUnavailable
from hal.alsa import EPIPE, open_pcm, reason
from hal.profile import SpeakerProfile
from hal.speaker import Speaker

log = logging.getLogger("roombox.hal")


class AlsaSpeaker(Speaker):
    """Interleaved S16_LE playback; underruns are counted and playback goes on."""

    def __init__(self, profile: SpeakerProfile) -> None:
        super().__init__(profile)
        import alsaaudio

        self._alsa = alsaaudio
        self._pcm = open_pcm("playback", profile.device, self.sample_rate, self.channels, self.period_frames)

    def _write(self, samples: np.ndarray) -> None:
        data = samples.astype("<i2", copy=False).tobytes()
        frame_bytes = self.channels * 2
        while data:
            try:
                written = self._pcm.write(data)
            except self._alsa.ALSAAudioError as exc:
                raise DeviceUnavailable(f"alsa: playback '{self.profile.device}' failed ({reason(exc)})") from None
            if written == -EPIPE:
                self.underruns += 1
                log.warning("speaker: underrun on '%s' (%d so far)", self.profile.device, self.underruns)
                continue
            if written < 0:
                raise DeviceUnavailable(f"alsa: playback '{self.profile.device}' failed (error {-written})")
            data = data[written * frame_bytes:]

    def _close(self) -> None:
        try:
            self._pcm.drain()
        except self._alsa.ALSAAudioError:
            pass  # an unplugged device cannot drain; closing still releases it
        self._pcm.close()

    def status(self):
        status = super().status()
        status["device"] = self.profile.device
        return status
