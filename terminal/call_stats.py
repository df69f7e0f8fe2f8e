"""Call statistics once a second from aiortc's getStats(): send/receive bitrates, frame
rates, round-trip time and loss, for ``roombox status``, the demo's live view and metrics.

aiortc's inbound stats carry no byte counts, so the receive rate is the subscriptions'
transport bytes; RTT and send loss come from the receiver reports on what we send."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger("roombox.terminal.session")

STATS_EVERY_S = 1.0
STATS_TIMEOUT_S = 2.0


class CallStats:
    """Reads the session's peer connections; ``summary()`` is the latest figures."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self._last: dict[str, float] = {}
        self._last_at: float | None = None
        self.figures: dict[str, Any] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            try:
                async with asyncio.timeout(STATS_TIMEOUT_S):
                    await self._sample()
            except Exception as exc:  # noqa: BLE001 - figures are optional; the call is not
                # getStats on a peer connection that is closing may raise: skip that second.
                log.debug("call: no statistics this second (%s: %s)", type(exc).__name__, exc)

    async def _sample(self) -> None:
        totals = {"tx_video_bytes": 0, "tx_audio_bytes": 0, "rx_bytes": 0, "rx_packets": 0,
                  "rx_lost": 0, "frames_encoded": 0, "frames_shown": 0}
        rtts, losses = [], []
        receiving = {id(r.pc) for r in self.session.remote.values()}
        for pc in list(self.session._pcs):
            report = await pc.getStats()
            for stat in report.values():
                if stat.type == "outbound-rtp" and stat.kind in ("audio", "video"):
                    totals[f"tx_{stat.kind}_bytes"] += stat.bytesSent
                elif stat.type == "inbound-rtp":
                    totals["rx_packets"] += stat.packetsReceived
                    totals["rx_lost"] += max(0, stat.packetsLost)
                elif stat.type == "transport" and id(pc) in receiving:
                    totals["rx_bytes"] += stat.bytesReceived
                elif stat.type == "remote-inbound-rtp":
                    if stat.roundTripTime is not None:
                        rtts.append(stat.roundTripTime)
                    losses.append(stat.fractionLost / 256)   # RTCP's 8-bit fixed point
        encoder = self.session.encoder
        totals["frames_encoded"] = encoder.frames_encoded if encoder else 0
        totals["frames_shown"] = sum(r.frames_shown for r in self.session.remote.values())
        now = time.monotonic()
        if self._last_at is not None:
            dt = now - self._last_at
            rate = {k: max(0.0, (v - self._last.get(k, 0)) / dt) for k, v in totals.items()}
            expected = rate["rx_packets"] + rate["rx_lost"]
            self.figures = {
                "tx_video_kbps": round(rate["tx_video_bytes"] * 8 / 1000, 1),
                "tx_audio_kbps": round(rate["tx_audio_bytes"] * 8 / 1000, 1),
                "rx_kbps": round(rate["rx_bytes"] * 8 / 1000, 1),
                "tx_fps": round(rate["frames_encoded"], 1),
                "rx_fps": round(rate["frames_shown"], 1),
                "rtt_ms": round(1000 * max(rtts), 1) if rtts else None,
                "tx_loss": round(max(losses), 3) if losses else None,
                "rx_loss": round(rate["rx_lost"] / expected, 3) if expected else None}
            known = [v for v in (self.figures["tx_loss"], self.figures["rx_loss"]) if v is not None]
            self.figures["loss"] = max(known) if known else None     # the worse direction
        self._last, self._last_at = totals, now

    def summary(self) -> dict[str, Any]:
        return dict(self.figures)
