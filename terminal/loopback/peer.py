"""A simulated remote participant for the demo, the benchmark and the meeting tests: an
aiortc peer in the same Janus VideoRoom that publishes a stamped test pattern (H.264, through
media/video's encoder) and a known tone, subscribes to the box, decodes its frames (stamps
read back) and measures the tone it hears. Plus room creation and tone measurement."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fractions
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hal.camera import open_camera
from hal.camera import stamp as stamps
from hal.profile import load_profile
from media.video import VideoConfig, VideoEncoder, VideoReceiver, VideoSender, choose_encoder
from terminal.conference.janus_api import JanusApi

SMALL_CAMERA = {"width": 320, "height": 240, "fps": 30}
SAMPLE_RATE = 48000


def tone_level(samples: np.ndarray, freq_hz: float, rate: int = SAMPLE_RATE) -> float:
    """Fraction of the signal's power at ``freq_hz`` (±20 Hz): 1.0 for a pure tone."""
    x = samples.astype(np.float64).reshape(len(samples), -1).mean(axis=1)
    if len(x) < rate // 10 or not np.any(x):
        return 0.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    band = (freqs > freq_hz - 20) & (freqs < freq_hz + 20)
    return float(spectrum[band].sum() / spectrum.sum())


def has_tone(samples: np.ndarray, freq_hz: float, rate: int = SAMPLE_RATE) -> bool:
    """``samples`` are loud (above -40 dBFS) and mostly the tone at ``freq_hz``."""
    if not len(samples):
        return False
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    return rms > 328 and tone_level(samples, freq_hz, rate) > 0.5


async def create_room(url: str, room: int, pin: str | None = None, **extra: Any) -> None:
    """Create an H.264/Opus VideoRoom ``room`` on the Janus at ``url`` (its HTTP API)."""
    api = JanusApi(url)
    try:
        await api.create()
        handle = await api.attach("janus.plugin.videoroom")
        body = {"request": "create", "room": room, "publishers": 8, "videocodec": "h264",
                "audiocodec": "opus", "notify_joining": True, **extra}
        if pin:
            body["pin"] = pin
        await api.message(handle, body)
    finally:
        await api.close()


class ToneTrack(MediaStreamTrack):
    """A sine tone at ``freq_hz``, -12 dBFS, in 20 ms frames paced in real time."""

    kind = "audio"

    def __init__(self, freq_hz: float) -> None:
        super().__init__()
        self.freq_hz = freq_hz
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._n / SAMPLE_RATE - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        t = (self._n + np.arange(960)) / SAMPLE_RATE
        samples = (0.25 * 32767 * np.sin(2 * np.pi * self.freq_hz * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, self._n
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._n += 960
        return frame


class RemotePeer:
    """A participant: ``async with RemotePeer(url, room, name)``; ``watch(feed)`` subscribes
    to one publisher, decoding its video (stamps in ``stamps``) and keeping its audio."""

    def __init__(self, url: str, room: int, display: str = "remote", tone_hz: float = 440.0,
                 pin: str | None = None, publish: bool = True) -> None:
        self.api = JanusApi(url)
        self.room, self.display, self.tone_hz, self.pin = room, display, tone_hz, pin
        self.publish = publish
        self.pcs: list[RTCPeerConnection] = []
        self.stamps: list[stamps.Stamp] = []
        self.frames_decoded = 0
        self.audio: list[np.ndarray] = []
        self.first_frame_at: float | None = None
        self.first_audio_at: float | None = None
        self.feed_id: int | None = None
        self.publishers: list[dict] = []
        self._stack = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task] = []

    def _pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        return pc

    async def __aenter__(self) -> "RemotePeer":
        await self.api.create()
        self._stack.push_async_callback(self.api.close)
        self._tasks.append(asyncio.create_task(self.api.poll()))
        self.handle = await self.api.attach("janus.plugin.videoroom")
        body = {"request": "join", "ptype": "publisher", "room": self.room, "display": self.display}
        if self.pin:
            body["pin"] = self.pin
        joined, _ = await self.api.message(self.handle, body)
        self.feed_id, self.private_id = joined["id"], joined.get("private_id")
        self.publishers = joined.get("publishers", [])
        if self.publish:
            await self._publish()
        return self

    async def _publish(self) -> None:
        profile = dataclasses.replace(load_profile("sim").camera, **SMALL_CAMERA)
        camera = await asyncio.to_thread(open_camera, profile)
        self._stack.callback(camera.close)
        config = VideoConfig(encoder="libx264", adapt=False)
        self.encoder = VideoEncoder(camera, config, await choose_encoder(camera, config, environ={}))
        pc = self._pc()
        self.sender = VideoSender(self.encoder, adapt=False)
        self.sender.attach(pc)
        pc.addTransceiver(ToneTrack(self.tone_hz), direction="sendonly")
        self._tasks.append(asyncio.create_task(self.encoder.run()))
        await pc.setLocalDescription(await pc.createOffer())
        _, answer = await self.api.message(self.handle, {"request": "publish"},
                                           jsep={"type": "offer", "sdp": pc.localDescription.sdp})
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        self.sender.check_negotiated(pc)

    async def watch(self, feed: int) -> None:
        """Subscribe to ``feed``: decode its video, keep its audio."""
        handle = await self.api.attach("janus.plugin.videoroom")
        body = {"request": "join", "ptype": "subscriber", "room": self.room, "streams": [{"feed": feed}]}
        if self.pin:
            body["pin"] = self.pin
        _, offer = await self.api.message(handle, body)
        pc = self._pc()
        receiver = await self._stack.enter_async_context(VideoReceiver())

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video":
                transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
                receiver.attach(transceiver.receiver)
                self._tasks.append(asyncio.create_task(self._decode(receiver)))
            else:
                self._tasks.append(asyncio.create_task(self._hear(track)))

        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        answer = await pc.createAnswer()
        # DTLS passive, as the box's own subscriptions: as DTLS client, aiortc's first hello
        # can reach Janus before our answer does and then waits out OpenSSL's 1 s
        # retransmission timer, which would be measured as the box's join time.
        await pc.setLocalDescription(RTCSessionDescription(
            answer.sdp.replace("a=setup:active", "a=setup:passive"), "answer"))
        await self.api.message(handle, {"request": "start"},
                               jsep={"type": "answer", "sdp": pc.localDescription.sdp})

    async def _decode(self, receiver: VideoReceiver) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await receiver.recv()
            self.frames_decoded += 1
            if self.first_frame_at is None:
                self.first_frame_at = loop.time()
            stamp = stamps.read_frame(frame)
            if stamp is not None:
                self.stamps.append(stamp)

    async def _hear(self, track) -> None:
        loop = asyncio.get_running_loop()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    if self.first_audio_at is None and np.abs(samples).max() > 300:
                        self.first_audio_at = loop.time()
                    self.audio.append(samples)
                    del self.audio[:-250]   # keep 5 s

    def heard(self, seconds: float = 1.0) -> np.ndarray:
        samples = np.concatenate(self.audio) if self.audio else np.zeros(0, np.int16)
        return samples[-int(seconds * SAMPLE_RATE):]

    async def request(self, body: dict) -> dict:
        """A VideoRoom request on the peer's publisher handle (e.g. ``moderate``)."""
        data, _ = await self.api.message(self.handle, body)
        return data

    async def next_event(self, timeout_s: float = 10.0) -> dict:
        """The next VideoRoom event on the publisher handle, as ``{"data": ...}``."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.api.events(self.handle).get()
                data = event.get("plugindata", {}).get("data")
                if event["janus"] == "event" and data:
                    return {"data": data}

    async def box_feed(self, timeout_s: float = 20.0) -> int:
        """The feed id of the next publisher to appear after this peer joined."""
        known = {p["id"] for p in self.publishers}
        while True:
            event = await self.next_event(timeout_s)
            for publisher in event["data"].get("publishers", []):
                if publisher["id"] not in known:
                    return publisher["id"]

    async def __aexit__(self, *exc_info) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if getattr(self, "sender", None) is not None:
            self.sender.close()
        for pc in self.pcs:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await pc.close()
        await self._stack.aclose()
