"""Simulated speaker: takes samples at the device's real-time pace, sounds them into the
simulated room (hal.sim_room, so the simulated microphones hear them) and keeps what was
played, for tests and for the optional ``sink`` WAV written at close."""
from __future__ import annotations

import collections
import time

import numpy as np

from hal.profile import SpeakerProfile
from hal.sim_room import room
from hal.speaker import Speaker
from hal.wav import write_wav

KEEP_S = 30.0
BUFFER_S = 0.08  # like an ALSA buffer: writes return once at most this much is queued


class SimSpeaker(Speaker):
    def __init__(self, profile: SpeakerProfile) -> None:
        super().__init__(profile)
        self._kept: collections.deque[np.ndarray] = collections.deque()
        self._kept_frames = 0
        self._sink: list[np.ndarray] | None = [] if profile.sink else None
        self._play_until = 0.0

    def _write(self, samples: np.ndarray) -> None:
        now = time.monotonic()
        starts_at = max(self._play_until, now)
        room().play(samples, self.sample_rate, starts_at)
        self._play_until = starts_at + len(samples) / self.sample_rate
        ahead = self._play_until - now - BUFFER_S
        if ahead > 0:
            time.sleep(ahead)
        self._kept.append(samples.copy())
        self._kept_frames += len(samples)
        while self._kept_frames - len(self._kept[0]) >= KEEP_S * self.sample_rate:
            self._kept_frames -= len(self._kept.popleft())
        if self._sink is not None:
            self._sink.append(samples.copy())

    def played(self) -> np.ndarray:
        """The last KEEP_S seconds played, int16 (frames, channels)."""
        if not self._kept:
            return np.zeros((0, self.channels), np.int16)
        return np.concatenate(list(self._kept))

    def _close(self) -> None:
        if self._sink:
            write_wav(self.profile.sink, np.concatenate(self._sink), self.sample_rate)
