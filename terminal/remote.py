"""One remote participant's media: their audio into the speaker mix, their video decoded
(marker-bit receiver from media/video) and handed to the screen's frame sink."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from media.audio.jitter import AudioReceiver
from media.video import VideoReceiver
from terminal.call_audio import RemoteAudioMixer, pump_remote_audio
from terminal.screen_sink import FrameSink

log = logging.getLogger("roombox.terminal.session")

CLOSE_TIMEOUT_S = 3.0


class RemoteParticipant:
    """Owns one subscription's peer connection and the tasks that move its media.

    ``await open()`` before the remote description is set: it readies the video decoder and
    listens for tracks. Tasks run in the session's TaskGroup; ``stop()`` cancels and awaits
    them, removes the participant from the screen and closes the peer connection.
    """

    def __init__(self, participant_id: str, display: str, pc: RTCPeerConnection, sink: FrameSink,
                 mixer: RemoteAudioMixer, group: asyncio.TaskGroup) -> None:
        self.participant_id = participant_id
        self.display = display
        self.pc = pc
        self.sink = sink
        self.mixer = mixer
        self._group = group
        self._tasks: list[asyncio.Task] = []
        self._receiver: VideoReceiver | None = None
        self._receiver_used = False
        self._audio: AudioReceiver | None = None
        self.frames_shown = 0
        self.first_frame_at: float | None = None
        self.has_audio = False
        self.has_video = False

    async def open(self) -> None:
        self._receiver = VideoReceiver()
        await self._receiver.__aenter__()
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        name = f"remote-{track.kind}-{self.participant_id}"
        if track.kind == "audio":
            self.has_audio = True
            self._audio = AudioReceiver()  # plays every packet, Opus FEC and concealment
            self._audio.attach(next(t for t in self.pc.getTransceivers() if t.receiver.track is track).receiver)
            self._tasks.append(self._group.create_task(
                pump_remote_audio(self.participant_id, self._audio, self.mixer), name=name))
        elif track.kind == "video" and not self._receiver_used:
            transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
            self._receiver.attach(transceiver.receiver)
            self._receiver_used = True
            self.has_video = True
            self._tasks.append(self._group.create_task(self._show_video(), name=name))
        else:
            log.info("call: ignoring extra %s track from %s", track.kind, self.display)

    async def _show_video(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self._receiver.recv()
            if self.first_frame_at is None:
                self.first_frame_at = loop.time()
            self.frames_shown += 1
            self.sink.update_participant(self.participant_id, self.display, frame)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.has_video:
            self.sink.remove_participant(self.participant_id)
        self.mixer.remove(self.participant_id)
        if self._receiver is not None:
            await self._receiver.__aexit__(None, None, None)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.pc.close()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"display": self.display, "frames_shown": self.frames_shown,
                                  "audio_level_dbfs": round(self.mixer.levels.get(self.participant_id, -90.0), 1)}
        if self._audio is not None:
            status["audio"] = self._audio.status()
        if self._receiver is not None and self._receiver_used:
            video = self._receiver.status()
            status["video"] = {k: video.get(k) for k in ("decoder", "decoded", "dropped", "decode_errors",
                                                         "rembs_sent", "rembs_held_back")}
        return status
