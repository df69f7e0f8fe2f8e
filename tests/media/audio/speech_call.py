"""One speech call through a real Janus VideoRoom with random UDP loss on one leg, and what
it did to the speech: shared by tests/media/audio/test_loss_speech.py and bench/loss_audio.py.

A publisher (aiortc) sends espeak-ng speech in real time; a subscriber (aiortc) receives it
through Janus, either with ``stack="ours"`` (media.audio: FEC encoder, OpusPlayout) or
``stack="stock"`` (aiortc as installed). Loss is applied with tests/loss.py on the chosen
leg's UDP port, both directions, once both peers are up. Run inside Janus's namespace with
aiortc gathering on loopback only (tests/janus.py's ``in_janus_netns``).

The received audio is put on the sender's timeline by the decoded frames' pts (aligned
once by cross-correlation) and compared with what was sent: STOI, PESQ-WB (when at least
half of the frames arrived), the share of sent 20 ms frames with no decoded audio, and the
latency from the sender handing a frame to the encoder to the decoded frame coming out.
"""
from __future__ import annotations

import asyncio
import contextlib
import fractions
import functools
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.audio.jitter import AudioReceiver
from media.audio.opus_sender import MIN_EXPECTED_LOSS_PCT, LossResilientOpus, advertise_opus_fec
from tests import janus as J
from tests.loss import clear_udp_loss, dropped_packets, leg_port, set_udp_loss

RATE = 48000
FRAME = 960
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
]
LEAD_IN_S = 1.0          # before the speech: ICE settled, loss rules in place, buffers warm
TAIL_S = 1.0             # after it: the last packets through the playout delay
CONNECT_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 5.0
LEGS = ("pub", "sub")
STACKS = ("ours", "stock")


@functools.cache
def speech(seconds: float) -> np.ndarray:
    """``seconds`` of espeak-ng speech (Harvard sentences, 0.3 s apart), int16 mono 48 kHz."""
    pieces, total = [], 0
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(100):
            path = Path(tmp, f"{i}.wav")
            subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(path), SENTENCES[i % len(SENTENCES)]],
                           check=True, capture_output=True, timeout=30)
            with wave.open(str(path)) as w:
                raw = np.frombuffer(w.readframes(w.getnframes()), np.int16)
                frame = av.AudioFrame.from_ndarray(raw.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = w.getframerate()
            out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            pieces += [*out, np.zeros(int(0.3 * RATE), np.int16)]
            total += sum(map(len, out)) + int(0.3 * RATE)
            if total >= seconds * RATE:
                break
    signal = np.concatenate(pieces)[: int(seconds * RATE)]
    return signal[: len(signal) // FRAME * FRAME]


class SpeechTrack(MediaStreamTrack):
    """Sends silence until ``start()``, then ``signal`` once, then silence, in real time
    (20 ms frames), noting when each speech frame went to the encoder."""

    kind = "audio"

    def __init__(self, signal: np.ndarray) -> None:
        super().__init__()
        self.signal = signal
        self.sent_at: list[float] = []
        self._started = False
        self._t0: float | None = None
        self._pts = 0

    def start(self) -> None:
        self._started = True

    @property
    def finished(self) -> bool:
        return len(self.sent_at) * FRAME >= len(self.signal)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        due = self._t0 + self._pts / RATE
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)          # a live source's pace, not a test wait
        block = np.zeros(FRAME, np.int16)
        if self._started and not self.finished:
            index = len(self.sent_at)
            block = self.signal[index * FRAME:(index + 1) * FRAME]
            self.sent_at.append(time.monotonic())
        frame = av.AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


async def _publish(client: J.JanusClient, room: int, pc: RTCPeerConnection) -> int:
    handle = await client.attach()
    joined = await client.message(handle, {"request": "join", "ptype": "publisher", "room": room,
                                           "display": "speech"})
    await pc.setLocalDescription(await pc.createOffer())
    reply = await client.message(handle, {"request": "publish"},
                                 jsep={"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False})
    await pc.setRemoteDescription(RTCSessionDescription(reply["jsep"]["sdp"], "answer"))
    await client.webrtc_up(handle)
    return joined["data"]["id"]


async def _subscribe(client: J.JanusClient, room: int, feed: int, pc: RTCPeerConnection,
                     receiver: AudioReceiver | None) -> tuple[int, str]:
    handle = await client.attach()
    reply = await client.message(handle, {"request": "join", "ptype": "subscriber", "room": room,
                                          "streams": [{"feed": feed}]})
    offer_sdp = reply["jsep"]["sdp"]
    await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio" and receiver is not None:
            receiver.attach(transceiver.receiver)
    await pc.setLocalDescription(await pc.createAnswer())
    await client.message(handle, {"request": "start", "room": room},
                         jsep={"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False})
    await client.webrtc_up(handle)
    return handle, offer_sdp


async def _collect(track: MediaStreamTrack, frames: list, stop: asyncio.Event) -> None:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    while not stop.is_set():
        try:
            async with asyncio.timeout(0.5):
                frame = await track.recv()
        except TimeoutError:
            continue                        # stock: nothing decodable for a while
        except MediaStreamError:
            return
        now = time.monotonic()
        pts = frame.pts
        for chunk in resampler.resample(frame):
            samples = chunk.to_ndarray().reshape(-1)
            frames.append((pts, samples, now))
            pts += len(samples)


async def speech_call(server: J.JanusServer, loss_pct: float, leg: str, speech_s: float,
                      stack: str, room: int, with_pesq: bool = False,
                      min_loss_pct: int = MIN_EXPECTED_LOSS_PCT) -> dict[str, Any]:
    """Run one call (caller is inside Janus's namespace) and measure it; see module doc.
    PESQ needs the 'bench' extra, hence ``with_pesq``; ``min_loss_pct`` is our sender's
    floor (media.audio.opus_sender)."""
    if leg not in LEGS or stack not in STACKS:
        raise ValueError(f"speech_call: leg must be one of {LEGS} and stack one of {STACKS}, "
                         f"got leg={leg!r} stack={stack!r}")
    signal = speech(speech_s)
    client = J.JanusClient(server.url)
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    subscriber = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = SpeechTrack(signal)
    fec = LossResilientOpus(min_loss_pct) if stack == "ours" else None
    receiver = AudioReceiver() if stack == "ours" else None
    frames: list[tuple[int, np.ndarray, float]] = []
    stop = asyncio.Event()
    dropped = 0
    try:
        async with client.session(), asyncio.TaskGroup() as tasks:
            handle = await client.attach()
            await client.message(handle, {"request": "create", "room": room, "publishers": 2,
                                          "audiocodec": "opus", "opus_fec": True})
            transceiver = publisher.addTransceiver(track, direction="sendonly")
            if fec is not None:              # ours: wired as terminal/session.py does
                fec.attach(transceiver.sender)
                advertise_opus_fec(publisher)
                advertise_opus_fec(subscriber)
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                feed = await _publish(client, room, publisher)
                _, offer_sdp = await _subscribe(client, room, feed, subscriber, receiver)
            remote = receiver if receiver is not None else subscriber.getTransceivers()[0].receiver.track
            collector = tasks.create_task(_collect(remote, frames, stop))
            port = leg_port(publisher if leg == "pub" else subscriber)
            if loss_pct > 0:
                set_udp_loss(server.netns, loss_pct, port=port)
            try:
                await asyncio.sleep(LEAD_IN_S)   # the live call's own pace
                track.start()
                while not track.finished:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(TAIL_S)
            finally:
                dropped = dropped_packets(server.netns)
                clear_udp_loss(server.netns)
                stop.set()
                await collector
    finally:
        for pc in (publisher, subscriber):
            with contextlib.suppress(TimeoutError):     # aiortc's close can hang when cancelled
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await pc.close()
    result = measure(signal, track.sent_at, frames, with_pesq)
    result.update(loss_pct=loss_pct, leg=leg, stack=stack, speech_s=speech_s, dropped=dropped,
                  janus_offers_fec="useinbandfec=1" in offer_sdp)
    if receiver is not None:
        result["playout"] = receiver.status()
    if fec is not None:
        result["sender"] = fec.status()
    return result


def measure(signal: np.ndarray, sent_at: list[float], frames: list, with_pesq: bool = False) -> dict[str, Any]:
    """STOI, PESQ-WB, missing-frame ratio and latency of the received frames vs ``signal``."""
    from pystoi import stoi
    n = len(signal)
    if not frames:
        return {"stoi": 0.0, "pesq_wb": None, "missing": 1.0, "latency_ms": None}
    first = frames[0][0]
    end = max(p + len(s) for p, s, _ in frames) - first
    timeline = np.zeros(end, np.float64)
    covered = np.zeros(end, bool)
    for pts, samples, _ in frames:
        timeline[pts - first: pts - first + len(samples)] = samples
        covered[pts - first: pts - first + len(samples)] = True
    lag = _lag(signal.astype(np.float64), timeline)      # signal[i] is timeline[i + lag]
    received = np.zeros(n)
    got = np.zeros(n, bool)
    lo, hi = max(0, -lag), min(n, end - lag)
    if hi > lo:
        received[lo:hi] = timeline[lo + lag: hi + lag]
        got[lo:hi] = covered[lo + lag: hi + lag]
    missing = float(1 - got.reshape(-1, FRAME).any(axis=1).mean())
    latencies = []
    for pts, samples, at in frames:
        index = (pts - first - lag) // FRAME
        if 0 <= index < len(sent_at):
            latencies.append(at - sent_at[index])
    result = {"stoi": float(stoi(signal.astype(np.float64), received, RATE, extended=False)),
              "pesq_wb": _pesq_wb(signal, received) if with_pesq and missing <= 0.5 else None,
              "missing": missing,
              # Below a tenth of the frames the alignment has too little to go on.
              "latency_ms": 1000 * statistics.median(latencies) if missing < 0.9 and latencies else None}
    return result


def _lag(reference: np.ndarray, timeline: np.ndarray) -> int:
    size = 1 << int(np.ceil(np.log2(len(reference) + len(timeline))))
    corr = np.fft.irfft(np.fft.rfft(timeline, size) * np.conj(np.fft.rfft(reference, size)), size)
    lag = int(np.argmax(corr))
    return lag if lag < size // 2 else lag - size


def _pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> float | None:
    from pesq import pesq
    from scipy.signal import resample_poly
    try:
        return float(pesq(16000, resample_poly(reference.astype(np.float64), 1, 3),
                          resample_poly(degraded, 1, 3), "wb"))
    except Exception:        # pesq raises on e.g. no utterance detected: no figure, not a crash
        return None
