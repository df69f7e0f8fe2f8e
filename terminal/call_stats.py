"""Call statistics once a second from aiortc's getStats(): send/receive bitrates, frame
rates, round-trip time and loss, for ``roombox status``, the demo's live view and metrics."""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

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
            with contextlib.suppress(Exception):
                # getStats on a peer connection that is closing may raise; skip that second.
                async with asyncio.timeout(STATS_TIMEOUT_S):
                    await self._sample()

    async def _sample(self) -> None:
        totals = {"tx_video_bytes": 0, "tx_audio_bytes": 0, "rx_video_bytes": 0,
                  "rx_audio_bytes": 0, "frames_encoded": 0, "frames_shown": 0}
        rtts, losses = [], []
        for pc in list(self.session._pcs):
            report = await pc.getStats()
            for stat in report.values():
                kind = getattr(stat, "kind", "")
                if stat.type == "outbound-rtp":
                    totals[f"tx_{kind}_bytes"] += stat.bytesSent
                elif stat.type == "inbound-rtp":
                    totals[f"rx_{kind}_bytes"] += stat.bytesReceived
                elif stat.type == "remote-inbound-rtp":
                    if stat.roundTripTime is not None:
                        rtts.append(stat.roundTripTime)
                    if stat.fractionLost is not None:
                        losses.append(stat.fractionLost)
        encoder = self.session.encoder
        totals["frames_encoded"] = encoder.frames_encoded if encoder else 0
        totals["frames_shown"] = sum(r.frames_shown for r in self.session.remote.values())
        now = time.monotonic()
        if self._last_at is not None:
            dt = now - self._last_at
            rate = {k: max(0.0, (v - self._last.get(k, 0)) / dt) for k, v in totals.items()}
            self.figures = {
                "tx_video_kbps": round(rate["tx_video_bytes"] * 8 / 1000, 1),
                "tx_audio_kbps": round(rate["tx_audio_bytes"] * 8 / 1000, 1),
                "rx_video_kbps": round(rate["rx_video_bytes"] * 8 / 1000, 1),
                "rx_audio_kbps": round(rate["rx_audio_bytes"] * 8 / 1000, 1),
                "tx_fps": round(rate["frames_encoded"], 1),
                "rx_fps": round(rate["frames_shown"], 1),
                "rtt_ms": round(1000 * max(rtts), 1) if rtts else None,
                "loss": round(max(losses) / 256, 3) if losses else None}
        self._last, self._last_at = totals, now

    def summary(self) -> dict[str, Any]:
        return dict(self.figures)
