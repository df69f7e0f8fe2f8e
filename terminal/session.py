"""One call: the devices it opens, its media tasks and its connection to the meeting.

``CallSession.run()`` opens the camera, microphone and speaker, starts the encoder, the
microphone feed and the speaker mix in one TaskGroup, and connects through the meeting's
conference adapter. When the service is lost it posts ``call_lost`` and rejoins with
jittered backoff; when connected it posts ``call_connected``. Cancelling ``run()`` leaves the
call: every task is cancelled and awaited, peer connections are closed, the camera is closed
and the speaker released. The session never changes the terminal's state itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from typing import Any, Callable

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from hal.camera import open_camera
from hal.errors import HalError
from hal.microphone import open_microphone
from hal.profile import HardwareProfile
from hal.speaker import open_speaker
from media.audio.opus_sender import LossResilientOpus, advertise_opus_fec
from media.video import CodecNotNegotiated, VideoConfig, VideoEncoder, VideoSender, choose_encoder
from media.video.errors import VideoError
from terminal.call_audio import MicrophoneFeed, ReferenceFeed, RemoteAudioMixer
from terminal.call_stats import CallStats
from terminal.conference import (Conference, ConferenceError, ConferenceLost, Continuity, MeetingRejected,
                                 open_conference, parse_meeting_url, unwrap_group)
from terminal.remote import RemoteParticipant
from terminal.screen_sink import FrameSink, RecordingSink
from terminal.state import Event

log = logging.getLogger("roombox.terminal.session")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 3.0          # the rejoin goal is 5 s after the service returns (+ join time)
STABLE_AFTER_S = 10.0        # connected this long: the next loss starts the backoff afresh
CLOSE_TIMEOUT_S = 3.0
ACTIVE_SPEAKER_DBFS = -50.0
ACTIVE_SPEAKER_EVERY_S = 0.5


class CallFailed(ConferenceError, RuntimeError):
    """The call cannot start or go on (a device will not open, the meeting is rejected)."""


def limit_ice_host_addresses(addresses: tuple[str, ...]) -> None:
    """Gather ICE host candidates only on ``addresses`` (process-wide).

    aioice offers every interface's addresses and none on 127.0.0.1; a box on a private
    network namespace (tests, the loopback benchmark) or with several networks names the
    ones to use here. aioice has no option for it, so its discovery function is wrapped."""
    import aioice.ice

    wanted = list(addresses)
    discover = getattr(aioice.ice.get_host_addresses, "roombox_original", aioice.ice.get_host_addresses)

    def host_addresses(use_ipv4: bool = True, use_ipv6: bool = True) -> list[str]:
        found = set(discover(use_ipv4, use_ipv6))
        # 127.0.0.1 is never "found" by aioice; naming it is how loopback-only setups ask for it.
        return [a for a in wanted if a in found or a.startswith("127.")]

    host_addresses.roombox_original = discover
    aioice.ice.get_host_addresses = host_addresses


def backoff_s(attempt: int, rng: random.Random = random.Random()) -> float:
    """Full-jitter exponential backoff: uniform in [50 %, 100 %] of min(max, first·2^n)."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** attempt)
    return ceiling * rng.uniform(0.5, 1.0)


class CallSession:
    """One call to ``meeting_url``. Implements the adapters' CallHooks.

    ``post`` hands events to the state machine; ``sink`` receives remote video;
    ``ice_servers`` are the configured STUN/TURN servers (none by default: nothing public).
    """

    def __init__(self, meeting_url: str, profile: HardwareProfile, post: Callable[[Event], None],
                 sink: FrameSink | None = None, *, ice_servers: tuple[RTCIceServer, ...] = (),
                 video_config: VideoConfig | None = None, display_name: str = "roombox",
                 verify_tls: bool | str = True, encoder_name: str | None = None,
                 encoder_probed: dict[str, Any] | None = None,
                 audio_stages: tuple[str, ...] | None = None, audio_beam: str = "delay-and-sum",
                 loss_floor_pct: float | None = None) -> None:
        self.meeting = parse_meeting_url(meeting_url)   # MeetingRejected for a bad URL
        self.encoder_name = encoder_name
        # Why that encoder won when the chain was last probed ({"reason", "rejected"}), so
        # status keeps saying why after a call that reused the winner without probing.
        self.encoder_probed = encoder_probed
        self.audio_stages = audio_stages     # None: media/audio's default chain; (): none
        self.audio_beam = audio_beam
        self.profile = profile
        self.post = post
        self.sink = sink if sink is not None else RecordingSink()
        self.ice_servers = list(ice_servers)
        self.video_config = video_config or VideoConfig()
        # Loss planned for on the legs we cannot see (the SFU's to each viewer); None: defaults.
        self.loss_floor_pct = loss_floor_pct
        if loss_floor_pct is not None:
            self.video_config = dataclasses.replace(self.video_config, fec_min_loss_pct=loss_floor_pct)
        self.display_name = display_name
        self.verify_tls = verify_tls
        self.encoder: VideoEncoder | None = None
        self.mic_feed: MicrophoneFeed | None = None
        self.mixer: RemoteAudioMixer | None = None
        self.conference: Conference | None = None
        self.stats = CallStats(self)
        self.is_connected = False
        self.ever_connected = False
        self.is_muted = False
        self.attempts = 0
        self.rejoins = 0
        self.last_error = ""
        self.started_at = time.monotonic()
        self.connected_at: float | None = None
        self.remote: dict[str, RemoteParticipant] = {}
        self.continuity = Continuity()
        self._pcs: list[RTCPeerConnection] = []
        self._senders: list[tuple[VideoSender, Any]] = []
        self._group: asyncio.TaskGroup | None = None

    # ---- lifetime ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the call until cancelled; raises CallFailed if it cannot go on."""
        async with contextlib.AsyncExitStack() as devices:
            camera = await self._open(devices, "camera", open_camera, self.profile.camera)
            microphone = await self._open(devices, "microphone", open_microphone, self.profile.microphone)
            speaker = await self._open(devices, "speaker", open_speaker, self.profile.speaker)
            try:
                # The encoder that won last time is tried alone first: probing the whole
                # chain again would cost every join about half a second.
                choice = None
                if self.encoder_name:
                    with contextlib.suppress(VideoError):
                        choice = await choose_encoder(camera, self.video_config, order=[self.encoder_name])
                    if choice is not None and self.encoder_probed:
                        choice.reason = f"{self.encoder_probed['reason']} (probed at an earlier call)"
                        choice.attempts = list(self.encoder_probed["rejected"].items())
                choice = choice or await choose_encoder(camera, self.video_config)
                self.encoder_name = choice.name
                self.encoder_probed = {"reason": choice.reason, "rejected": dict(choice.attempts)}
            except VideoError as exc:
                raise CallFailed(str(exc)) from None
            self.encoder = VideoEncoder(camera, self.video_config, choice)
            if hasattr(self.sink, "update_self_view"):       # the room screen shows the room itself
                self.encoder.frame_listeners.append(self.sink.update_self_view)
            processor = self._audio_processor(microphone)
            self.mic_feed = MicrophoneFeed(microphone, processor)
            self.mic_feed.is_muted = self.is_muted
            self.mixer = RemoteAudioMixer(speaker)
            if processor is not None:
                self.mixer.add_reference_listener(
                    ReferenceFeed(processor, microphone.sample_rate, microphone.period_frames))
            await _unwrapped(self._run_tasks())

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self.encoder.run(), name="call-video-encoder")
            group.create_task(self.mic_feed.run(), name="call-microphone")
            group.create_task(self.mixer.run(), name="call-speaker")
            group.create_task(self.stats.run(), name="call-stats")
            group.create_task(self._choose_active_speaker(), name="call-active-speaker")
            await self._connect_loop()

    def _audio_processor(self, microphone) -> Any:
        """The media/audio pipeline for this microphone, or None (stages switched off, or a
        microphone the pipeline cannot take: then the channels are simply averaged)."""
        if self.audio_stages == ():
            return None
        from media.audio import STAGE_NAMES, build_processor
        from media.audio.errors import AudioError
        try:
            return build_processor(microphone.sample_rate, microphone.period_frames,
                                   stages=self.audio_stages or STAGE_NAMES, geometry=microphone.geometry,
                                   beam_method=self.audio_beam)
        except AudioError as exc:
            log.warning("call: microphone processing off (%s)", exc)
            return None

    async def _open(self, stack: contextlib.AsyncExitStack, kind: str, opener, profile) -> Any:
        try:
            device = await asyncio.to_thread(opener, profile)
        except HalError as exc:
            raise CallFailed(f"call: {kind} unavailable ({exc})") from None
        stack.push_async_callback(asyncio.to_thread, device.close)
        return device

    async def _connect_loop(self) -> None:
        failures = 0
        while True:
            self.attempts += 1
            conference = open_conference(self.meeting, self.display_name, self.verify_tls, self.continuity)
            self.conference = conference
            try:
                await _unwrapped(conference.run(self))
                reason = "conference ended"
            except MeetingRejected as exc:
                if self.ever_connected and self.meeting.kind == "janus":
                    # The room was there a moment ago: a restarted Janus recreates its rooms
                    # after it starts answering, so keep trying rather than give up the call.
                    reason = str(exc)
                else:
                    raise CallFailed(str(exc)) from None
            except ConferenceLost as exc:
                reason = str(exc)
            finally:
                await self._disconnect(conference)
            stable = self.connected_at is not None and time.monotonic() - self.connected_at > STABLE_AFTER_S
            failures = 0 if stable else failures + 1
            self.connected_at = None
            self.last_error = reason
            log.warning("call: %s; rejoining", reason)
            self.post(Event("call_lost", {"reason": reason}))
            await asyncio.sleep(backoff_s(failures - 1 if failures else 0))

    async def _disconnect(self, conference: Conference) -> None:
        """Close everything of one connection attempt (bounded), keeping the devices."""
        was_connected, self.is_connected = self.is_connected, False
        for participant in list(self.remote):
            await self.remote_removed(participant)
        for sender, track in self._senders:
            sender.close()
            self.mic_feed.drop_track(track)
        self._senders.clear()
        pcs, self._pcs = self._pcs, []
        for pc in pcs:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await pc.close()
        with contextlib.suppress(Exception):
            await conference.close()
        if was_connected:
            log.info("call: disconnected from %s", self.meeting.redacted())

    # ---- CallHooks ---------------------------------------------------------------------

    def new_peer_connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self.ice_servers)))
        advertise_opus_fec(pc)             # useinbandfec=1: Janus then negotiates FEC end to end
        self._pcs.append(pc)
        return pc

    def add_local_media(self, pc: RTCPeerConnection) -> None:
        sender = VideoSender(self.encoder)
        sender.attach(pc)
        track = self.mic_feed.new_track()
        self.opus_redundancy().attach(pc.addTransceiver(track, direction="sendonly").sender)
        self._senders.append((sender, track))

    def opus_redundancy(self) -> LossResilientOpus:
        """Our Opus sender for one connection, planning for at least the loss floor."""
        if self.loss_floor_pct is None:
            return LossResilientOpus()
        return LossResilientOpus(round(self.loss_floor_pct))

    def check_local_media(self, pc: RTCPeerConnection) -> None:
        sender = next(s for s, _ in self._senders if s.transceiver in pc.getTransceivers())
        try:
            sender.check_negotiated(pc)
        except CodecNotNegotiated as exc:
            raise MeetingRejected(f"{exc} (is the room's videocodec h264?)") from None

    def published(self) -> None:
        if self.attempts > 1:
            self.rejoins += 1
        self.is_connected = True
        self.ever_connected = True
        self.connected_at = time.monotonic()
        log.info("call: publishing to %s", self.meeting.redacted())
        self.post(Event("call_connected", {"meeting": self.meeting.redacted()}))

    async def remote_added(self, participant_id: str, display: str, pc: RTCPeerConnection) -> None:
        participant = RemoteParticipant(participant_id, display, pc, self.sink, self.mixer, self._group)
        self.remote[participant_id] = participant
        await participant.open()

    async def remote_removed(self, participant_id: str) -> None:
        participant = self.remote.pop(participant_id, None)
        if participant is not None:
            await participant.stop()
            if participant.pc in self._pcs:
                self._pcs.remove(participant.pc)

    def mute_requested(self, by: str) -> None:
        log.info("call: %s asked us to mute", by)
        self.post(Event("remote_mute_requested", {"by": by}))

    # ---- from the terminal -------------------------------------------------------------

    def set_muted(self, muted: bool) -> None:
        """Silence (or restore) the microphone in what we send; the state machine decides."""
        self.is_muted = muted
        if self.mic_feed is not None:
            self.mic_feed.is_muted = muted

    async def _choose_active_speaker(self) -> None:
        while True:
            await asyncio.sleep(ACTIVE_SPEAKER_EVERY_S)
            levels = {p: v for p, v in self.mixer.levels.items() if v > ACTIVE_SPEAKER_DBFS}
            self.sink.set_active_speaker(max(levels, key=levels.get) if levels else None)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "meeting": self.meeting.redacted(), "connected": self.is_connected,
            "attempts": self.attempts, "rejoins": self.rejoins, "last_error": self.last_error,
            "muted": self.is_muted, "camera_open": self.encoder is not None and not self.encoder.camera.is_closed,
            "encoder": self.encoder.choice.name if self.encoder else None,
            "video": self.encoder.status() if self.encoder else None,
            # How our video is sent: target rate and why, loss reported, FEC plan.
            "sending": self._senders[0][0].status() if self._senders else None,
            "participants": {p: r.status() for p, r in self.remote.items()},
            **self.stats.summary()}
        if self.conference is not None:
            status["conference"] = self.conference.status()
        if self.mic_feed is not None:
            status["microphone"] = self.mic_feed.status()
        if self.mixer is not None:
            status["speaker"] = self.mixer.status()
        return status


async def _unwrapped(coro) -> None:
    """Await an adapter's run(); a TaskGroup's ExceptionGroup becomes its conference error."""
    try:
        await coro
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
