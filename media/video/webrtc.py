"""Encoded video into aiortc without re-encoding, with the feedback aiortc drops on that path.

aiortc sends a track that yields ``av.Packet`` through the codec's ``pack()`` (no encoding),
but on that path it ignores PLI/FIR and REMB, and it sends H.264 bytes labelled as VP8 if
VP8 was negotiated. So ``VideoSender``:
- forces H.264 with codec preferences and checks the negotiated codec (CodecNotNegotiated);
- wraps the RTCRtpSender's RTCP handler (an instance attribute, no edits to aiortc) so PLI
  and FIR reach our encoder as keyframe requests and REMB sets its target bitrate;
- feeds the quality ladder, which steps resolution/frame rate down and back up;
- under loss (lossrate.py): lowers the rate from receiver reports and forwarded keyframe
  requests, and sends each NACKed packet more than once. Keyframes forced by PLI/FIR are
  rate-limited by the encoder (``video.keyframe_min_gap_s``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import (RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK,
                        RtcpPsfbPacket, RtcpRrPacket, RtcpRtpfbPacket, unpack_remb_fci)
from aiortc.sdp import SessionDescription

from media.net import tolerate_loss_on
from media.video.encoder import VideoEncoder
from media.video.errors import CodecNotNegotiated
from media.video.fec_stream import ProtectedH264Packer
from media.video.ladder import QualityLadder
from media.video.lossrate import CopyBudget, ExpectedLoss, LossRate
from media.video.outputs import EncodedOutput

log = logging.getLogger("roombox.media.video")

# A few frames of slack between the encoder and aiortc's send loop; more only adds latency.
TRACK_QUEUE_PACKETS = 4
# Headroom under the REMB estimate: REMB is a ceiling, and RTP/SRTP headers ride on top.
REMB_SHARE = 0.9
MIN_PARITY_OVERHEAD = 0.25      # parity per picture byte always allowed, whatever the rate
SHARE_MIN_BYTES = 20_000        # bytes sent before the picture's share of them is re-measured


def h264_codecs(kind: str = "video") -> list:
    """aiortc's H.264 codecs (and their RTX), for ``setCodecPreferences``."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    h264 = [c for c in codecs if c.mimeType.lower() == "video/h264"]
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    return h264 + rtx


def negotiated_video_codecs(description_sdp: str, mid: str | None) -> list[str]:
    """Codec names (without RTX/FEC) in the video section ``mid`` of a session description."""
    session = SessionDescription.parse(description_sdp)
    for media in session.media:
        if media.kind == "video" and (mid is None or media.rtp.muxId == mid) and media.port != 0:
            return [c.name for c in media.rtp.codecs if c.name.lower() not in ("rtx", "red", "ulpfec")]
    return []


class EncodedVideoTrack(MediaStreamTrack, EncodedOutput):
    """An aiortc video track yielding our encoder's ``av.Packet``s (pts in 1/90000)."""

    kind = "video"

    def __init__(self) -> None:
        MediaStreamTrack.__init__(self)
        EncodedOutput.__init__(self, "webrtc")
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue(TRACK_QUEUE_PACKETS)

    def _deliver(self, packet: av.Packet, keyframe: bool) -> None:
        if self._queue.full():
            # aiortc fell behind (congested transport): drop the backlog and resume at a
            # keyframe, so the viewer sees a jump instead of a growing delay or a broken picture.
            while not self._queue.empty():
                self._queue.get_nowait()
                self.packets_dropped += 1
            self._lost_data("webrtc queue full")
            if not keyframe:
                return
            self.is_waiting_for_keyframe = False
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self._queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        EncodedOutput.stop(self)
        if self.readyState == "live":
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)  # wakes recv() so aiortc's send loop ends
        MediaStreamTrack.stop(self)


class VideoSender:
    """Puts one ``VideoEncoder`` on one RTCPeerConnection as an H.264 send-only track.

    ``attach()`` before creating the offer/answer; ``check_negotiated()`` after both
    descriptions are set. Runs on the event loop.
    """

    def __init__(self, encoder: VideoEncoder, adapt: bool | None = None) -> None:
        self.encoder = encoder
        self.consent = None
        adapt = encoder.config.adapt if adapt is None else adapt
        self.ladder = QualityLadder(encoder.rungs) if adapt else None
        self.track = EncodedVideoTrack()
        self.transceiver: RTCRtpTransceiver | None = None
        self.codec = ""
        self.remb_bps: int | None = None
        self.pli_count = 0
        self.fir_count = 0
        self.remb_count = 0
        self.fraction_lost = 0.0
        self.extra_retransmissions = 0
        self.copy_budget = CopyBudget()
        config = encoder.config
        self.loss_rate = LossRate(config.bitrate_bps, config.min_bitrate_bps, config.max_bitrate_bps)
        self.expected_loss = ExpectedLoss(config.fec_min_loss_pct / 100)
        self.packer = ProtectedH264Packer(self.expected_loss.value) if config.fec else None
        self.data_share = 1.0
        self._share_mark = (0, 0)

    def attach(self, pc: RTCPeerConnection) -> RTCRtpTransceiver:
        """Add the send-only video transceiver (H.264 only) and start feeding it."""
        self.transceiver = pc.addTransceiver(self.track, direction="sendonly")
        self.transceiver.setCodecPreferences(h264_codecs())
        if self.packer is not None:
            # aiortc fills its (name-mangled) encoder slot lazily with its own packer; filled
            # first, ours is used. Only H.264 is ever negotiated here (check_negotiated).
            self.transceiver.sender._RTCRtpSender__encoder = self.packer
        self._tap_rtcp(self.transceiver.sender)
        # aioice would close the call after ~30 s of heavy loss (media/net/consent.py).
        self.consent = tolerate_loss_on(self.transceiver.sender.transport)
        self.encoder.add_output(self.track)
        self.track.start()
        return self.transceiver

    def check_negotiated(self, pc: RTCPeerConnection) -> str:
        """Raise CodecNotNegotiated unless the answer carries H.264 only for our video."""
        answer = pc.remoteDescription if pc.remoteDescription.type == "answer" else pc.localDescription
        return self.check_answer(answer.sdp)

    def check_answer(self, answer_sdp: str) -> str:
        """The check itself, on an answer's SDP text."""
        codecs = negotiated_video_codecs(answer_sdp, self.transceiver.mid)
        if not codecs or any(name.lower() != "h264" for name in codecs):
            raise CodecNotNegotiated(
                f"video: peer answered codecs {codecs or 'none'} for mid {self.transceiver.mid}; "
                "expected H264 only (sending our H.264 under another codec's name would be garbage)")
        self.codec = "H264"
        return self.codec

    def close(self) -> None:
        self.encoder.remove_output(self.track)
        self.track.stop()

    def _tap_rtcp(self, sender: RTCRtpSender) -> None:
        handle_original = sender._handle_rtcp_packet

        async def handle(packet) -> None:
            self._on_rtcp(packet, sender._ssrc)
            await handle_original(packet)
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                # aiortc answered each NACKed packet once; under loss, send more copies.
                copies = [seq for _ in range(self.loss_rate.retransmit_copies() - 1) for seq in packet.lost]
                for seq in copies[:self.copy_budget.allow(len(copies), self.allowed_bps())]:
                    await sender._retransmit(seq)
                    self.extra_retransmissions += 1

        # The DTLS transport dispatches RTCP through this attribute; wrapping it per instance
        # leaves aiortc's own handling (NACK → retransmit, RR → stats) intact.
        sender._handle_rtcp_packet = handle

    def _on_rtcp(self, packet: Any, ssrc: int) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            if packet.fmt == RTCP_PSFB_PLI:
                self.pli_count += 1
            else:
                self.fir_count += 1
            self.encoder.request_keyframe("PLI" if packet.fmt == RTCP_PSFB_PLI else "FIR")
            self.loss_rate.on_keyframe_request()
            if not self.loss_rate.congested:
                # Behind a congested uplink the viewers' requests are explained by our own
                # leg: more parity would only add to the queue that drops it.
                self.expected_loss.on_keyframe_request()
            self._plan_fec()
            self._steer()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return  # another APP message, not REMB
            if ssrc in ssrcs:
                self.remb_count += 1
                self.remb_bps = bitrate
                self._steer()
        elif isinstance(packet, RtcpRrPacket):
            for report in packet.reports:
                if report.ssrc == ssrc:
                    self.fraction_lost = report.fraction_lost / 256
                    self.loss_rate.on_report(self.fraction_lost)
                    self.expected_loss.on_report(self.loss_rate.repairable_loss)
                    self._plan_fec()
            self._steer()

    def allowed_bps(self) -> int:
        """The send rate we aim for: loss-based, under REMB when the far end sends it."""
        allowed = self.loss_rate.target_bps
        if self.remb_bps is not None:
            allowed = min(allowed, int(self.remb_bps * REMB_SHARE))
        return allowed

    def _steer(self) -> None:
        allowed = self.allowed_bps()
        if self.packer is not None:
            # The whole stream must shrink when the rate control says so, or its test of
            # whether loss falls with the rate sees no change and takes congestion for the
            # link's own loss (behind a 500 kbit/s policer parity grew to four times a
            # 200 kbit/s picture). The picture cannot go below its floor: parity gets what
            # is left, and at least a quarter of the picture for the link's own loss (at the
            # floor, no parity at all left 30 % loss unrepaired). On a lossy but uncongested
            # link the rate stays high and the cap is far above the plan.
            floor = self.encoder.config.min_bitrate_bps
            self.packer.max_overhead = max(MIN_PARITY_OVERHEAD, allowed / floor - 1)
        # The parity rides in the same budget: the picture gets its measured share of it.
        self.encoder.set_target_bitrate(int(allowed * self._measure_data_share()))
        if self.ladder is not None:
            self.encoder.set_rung(self.ladder.update(time.monotonic(), allowed, self.encoder.load))

    def _plan_fec(self) -> None:
        if self.packer is None:
            return
        loss = self.expected_loss.value
        if self.loss_rate.congested:
            # Sending less is the cure; parity only for the link's own loss and the floor.
            loss = min(loss, max(self.expected_loss.floor, self.loss_rate.repairable_loss))
        self.packer.expected_loss = loss

    def _measure_data_share(self) -> float:
        if self.packer is None:
            return 1.0
        data, parity = self.packer.data_bytes, self.packer.parity_bytes
        sent_data, sent_parity = data - self._share_mark[0], parity - self._share_mark[1]
        if sent_data + sent_parity >= SHARE_MIN_BYTES:
            self.data_share = sent_data / (sent_data + sent_parity)
            self._share_mark = (data, parity)
        return self.data_share

    def fec_status(self) -> dict[str, Any] | None:
        if self.packer is None:
            return None
        return {"expected_loss": round(self.packer.expected_loss, 3),
                "viewers_loss": round(self.expected_loss.viewers, 3),
                "parity_packets": self.packer.parity_packets,
                "data_share": round(self.data_share, 3)}

    def status(self) -> dict[str, Any]:
        return {"codec": self.codec, "fec": self.fec_status(), "pli": self.pli_count, "fir": self.fir_count,
                "remb": self.remb_count, "remb_bps": self.remb_bps,
                "fraction_lost": round(self.fraction_lost, 3),
                "target_bps": self.allowed_bps(), "rate_reason": self.loss_rate.last_reason,
                "link_loss": round(self.loss_rate.inherent, 3),
                "extra_retransmissions": self.extra_retransmissions,
                "consent": self.consent.status() if self.consent else None,
                "ladder": self.ladder.last_reason if self.ladder else "off",
                "track": self.track.status()}
