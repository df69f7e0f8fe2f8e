"""Call audio: the room microphone through the audio pipeline (media/audio: beam, echo
cancellation, noise suppression, gain) into WebRTC (aiortc encodes it as Opus), and every
remote participant's audio mixed to the speaker.

The mix is the echo canceller's reference: every block is handed to the reference listeners
(``add_reference_listener``) on the playback thread, right before ``Speaker.write``, and kept
in ``RemoteAudioMixer.reference``. The pipeline's capture side runs on its own thread; the
event loop only moves frames.
"""
from __future__ import annotations

import asyncio
import collections
import fractions
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hal.microphone import Microphone
from hal.speaker import Speaker

log = logging.getLogger("roombox.terminal.audio")

SAMPLE_RATE = 48000
FRAME_SAMPLES = 960              # 20 ms: Opus's usual packet time
TRACK_QUEUE_FRAMES = 10          # 200 ms: more than that and the sender is not reading
PREBUFFER_SAMPLES = 2 * FRAME_SAMPLES    # absorbs network jitter before playback starts
MAX_BUFFER_SAMPLES = 10 * FRAME_SAMPLES  # beyond 200 ms queued, drop the oldest (latency)
REFERENCE_KEEP_BLOCKS = 50       # 1 s of what the speaker played
LEVEL_FLOOR_DBFS = -90.0


def level_dbfs(samples: np.ndarray) -> float:
    if not len(samples):
        return LEVEL_FLOOR_DBFS
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return max(LEVEL_FLOOR_DBFS, 20 * np.log10(rms / 32768)) if rms > 0 else LEVEL_FLOOR_DBFS


def to_mono_48k(frame: av.AudioFrame, resampler: av.AudioResampler) -> np.ndarray:
    """Any decoded audio frame as int16 mono at 48 kHz."""
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(out).astype(np.int16) if out else np.zeros(0, np.int16)


class MicrophoneTrack(MediaStreamTrack):
    """An aiortc audio track of 20 ms int16 mono frames pushed by ``MicrophoneFeed``."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue(TRACK_QUEUE_FRAMES)
        self._pts = 0
        self.frames_dropped = 0

    def push(self, samples: np.ndarray) -> None:
        if self._queue.full():
            self._queue.get_nowait()      # the oldest goes: live audio must not lag
            self.frames_dropped += 1
        self._queue.put_nowait(samples)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        samples = await self._queue.get()
        if samples is None:
            raise MediaStreamError
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += len(samples)
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
        super().stop()


class MicrophoneFeed:
    """Reads the microphone, runs each period through ``processor`` (a media.audio
    AudioProcessor, on a dedicated thread; without one, the channels are averaged), brings
    it to mono 48 kHz, silences it while muted and pushes 20 ms frames to every live
    ``MicrophoneTrack`` (one per published peer connection). ``run()`` until cancelled."""

    def __init__(self, microphone: Microphone, processor: Any = None) -> None:
        self.microphone = microphone
        self.processor = processor
        self.tracks: set[MicrophoneTrack] = set()
        self.is_muted = False
        self.frames_sent = 0
        self.level_dbfs = LEVEL_FLOOR_DBFS
        self._pending = np.zeros(0, np.int16)
        self._resampler = (None if microphone.sample_rate == SAMPLE_RATE else
                           av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE))

    def new_track(self) -> MicrophoneTrack:
        track = MicrophoneTrack()
        self.tracks.add(track)
        return track

    def drop_track(self, track: MicrophoneTrack) -> None:
        self.tracks.discard(track)
        track.stop()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(1, thread_name_prefix="audio-capture")
        try:
            async for period in self.microphone.periods():
                if self.processor is not None:
                    mono = await loop.run_in_executor(executor, self.processor.capture, period)
                else:
                    mono = period.astype(np.int32).mean(axis=1).astype(np.int16)
                if self._resampler is not None:
                    mono = self._resample(mono)
                self._pending = np.concatenate([self._pending, mono])
                while len(self._pending) >= FRAME_SAMPLES:
                    block, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
                    self._send(block)
        finally:
            executor.shutdown(wait=True)

    def _resample(self, mono: np.ndarray) -> np.ndarray:
        frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.microphone.sample_rate
        return to_mono_48k(frame, self._resampler)

    def _send(self, block: np.ndarray) -> None:
        self.level_dbfs = level_dbfs(block)
        if self.is_muted:
            block = np.zeros_like(block)
        for track in list(self.tracks):
            if track.readyState == "live":
                track.push(block)
        self.frames_sent += 1

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"muted": self.is_muted, "frames_sent": self.frames_sent,
                                  "level_dbfs": round(self.level_dbfs, 1)}
        if self.processor is not None:
            status["processing"] = self.processor.status()
        return status


class RemoteAudioMixer:
    """Mixes the remote participants' audio to the speaker in 20 ms blocks.

    ``add(participant, samples)`` queues int16 mono 48 kHz samples for one participant;
    ``run()`` plays the sum (silence when nobody talks, so the speaker keeps its clock) and
    hands every block played to the reference listeners. Per-participant levels (dBFS,
    smoothed) feed the active-speaker choice.
    """

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self._buffers: dict[str, np.ndarray] = {}
        self._started: set[str] = set()
        self.levels: dict[str, float] = {}
        self.reference: collections.deque[np.ndarray] = collections.deque(maxlen=REFERENCE_KEEP_BLOCKS)
        self._listeners: list[Callable[[np.ndarray], None]] = []
        self._resampler = (None if speaker.sample_rate == SAMPLE_RATE else
                           av.AudioResampler(format="s16", layout="mono", rate=speaker.sample_rate))
        self.blocks_played = 0
        self.samples_dropped = 0
        self.first_audible_at: float | None = None

    def add_reference_listener(self, listener: Callable[[np.ndarray], None]) -> None:
        """``listener(block)`` gets every int16 mono 48 kHz block, on the playback thread,
        right before it is written to the speaker."""
        self._listeners.append(listener)

    def add(self, participant: str, samples: np.ndarray) -> None:
        buffered = np.concatenate([self._buffers.get(participant, np.zeros(0, np.int16)), samples])
        if len(buffered) > MAX_BUFFER_SAMPLES:
            self.samples_dropped += len(buffered) - PREBUFFER_SAMPLES
            buffered = buffered[-PREBUFFER_SAMPLES:]
        self._buffers[participant] = buffered

    def remove(self, participant: str) -> None:
        self._buffers.pop(participant, None)
        self._started.discard(participant)
        self.levels.pop(participant, None)

    def mix_block(self) -> np.ndarray:
        """Take the next 20 ms from every participant whose buffer has started, and sum."""
        total = np.zeros(FRAME_SAMPLES, np.int32)
        for participant, buffered in list(self._buffers.items()):
            if participant not in self._started:
                if len(buffered) < PREBUFFER_SAMPLES:
                    continue
                self._started.add(participant)
            block = buffered[:FRAME_SAMPLES]
            self._buffers[participant] = buffered[FRAME_SAMPLES:]
            if len(block) < FRAME_SAMPLES:
                self._started.discard(participant)   # ran dry: prebuffer again
            previous = self.levels.get(participant, LEVEL_FLOOR_DBFS)
            self.levels[participant] = 0.7 * previous + 0.3 * level_dbfs(block)
            total[: len(block)] += block
        return np.clip(total, -32768, 32767).astype(np.int16)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            block = self.mix_block()
            self.reference.append(block)
            if self.first_audible_at is None and level_dbfs(block) > -60:
                self.first_audible_at = loop.time()
            await asyncio.to_thread(self._play, block)
            self.blocks_played += 1

    def _play(self, block: np.ndarray) -> None:
        """Playback thread: the reference first, then the speaker (which blocks at its pace)."""
        for listener in self._listeners:
            listener(block)
        self.speaker.write(self._to_speaker(block))

    def _to_speaker(self, block: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return block
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        return to_mono_48k(frame, self._resampler)  # mono at the speaker's rate

    def status(self) -> dict[str, Any]:
        return {"blocks_played": self.blocks_played, "samples_dropped": self.samples_dropped,
                "levels_dbfs": {p: round(v, 1) for p, v in self.levels.items()}}


class ReferenceFeed:
    """Hands what the speaker plays (48 kHz mono blocks) to the audio pipeline's render side
    at the microphone's rate, in its 10 ms frames. Runs on the playback thread."""

    def __init__(self, processor: Any, sample_rate: int, frame_size: int) -> None:
        self.processor = processor
        self.frame_size = frame_size
        self.sample_rate = sample_rate
        self._resampler = (None if sample_rate == SAMPLE_RATE else
                           av.AudioResampler(format="s16", layout="mono", rate=sample_rate))
        self._pending = np.zeros(0, np.int16)

    def __call__(self, block: np.ndarray) -> None:
        if self._resampler is not None:
            frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            block = to_mono_48k(frame, self._resampler)   # at the microphone's rate
        self._pending = np.concatenate([self._pending, block])
        while len(self._pending) >= self.frame_size:
            self.processor.render(self._pending[: self.frame_size])
            self._pending = self._pending[self.frame_size:]


async def pump_remote_audio(participant: str, track: MediaStreamTrack, mixer: RemoteAudioMixer) -> None:
    """Decoded frames of one remote audio track into the mixer, until the track ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    try:
        while True:
            frame = await track.recv()
            mixer.add(participant, to_mono_48k(frame, resampler))
    except MediaStreamError:
        log.info("audio: remote audio of %s ended", participant)
    finally:
        mixer.remove(participant)
