"""When to step video quality down and back up.

Two signals: the bitrate the network allows (REMB from viewers or the SFU, turned into the
encoder's target) and the encoder's load (encode time per frame / frame interval). A rung
needs about ``BITS_PER_PIXEL`` bits per pixel to look acceptable in H.264 baseline; below
that a smaller picture at the same rate looks better than a blocky large one. Down is fast
(``DOWN_HOLD_S`` of sustained trouble), up is slow (``UP_HOLD_S`` of headroom), so the
picture does not oscillate.
"""
from __future__ import annotations

import logging

from media.video.config import Rung

log = logging.getLogger("roombox.media.video")

BITS_PER_PIXEL = 0.04       # 720p30 ≈ 1.1 Mbit/s, 360p15 ≈ 140 kbit/s
OVERLOAD = 0.85             # encoder busy 85 % of each frame interval: frames start to drop
UP_LOAD = 0.5               # projected load on the rung above must stay under this
UP_HEADROOM = 1.25          # rate must exceed the upper rung's need by this factor
DOWN_HOLD_S = 2.0
UP_HOLD_S = 8.0


def needed_bitrate_bps(rung: Rung) -> int:
    return int(rung.pixel_rate * BITS_PER_PIXEL)


class QualityLadder:
    """Pure decision logic: feed ``update()`` with a time and the two signals, get the rung
    index to use (0 = best). Holds no I/O; the sender applies the result to the encoder."""

    def __init__(self, rungs: list[Rung], down_hold_s: float = DOWN_HOLD_S,
                 up_hold_s: float = UP_HOLD_S) -> None:
        self.rungs = rungs
        self.down_hold_s = down_hold_s
        self.up_hold_s = up_hold_s
        self.index = 0
        self._trouble_since: float | None = None
        self._headroom_since: float | None = None
        self.last_reason = ""

    def update(self, now_s: float, bitrate_bps: int | None, load: float) -> int:
        """``bitrate_bps``: what the network allows, None while nobody has said (no REMB)."""
        rung = self.rungs[self.index]
        starved = bitrate_bps is not None and bitrate_bps < needed_bitrate_bps(rung)
        overloaded = load > OVERLOAD
        if (starved or overloaded) and self.index < len(self.rungs) - 1:
            self._headroom_since = None
            self._trouble_since = self._trouble_since if self._trouble_since is not None else now_s
            if now_s - self._trouble_since >= self.down_hold_s:
                self._step(+1, f"{'bitrate' if starved else 'cpu'}: "
                               f"{bitrate_bps} bps, load {load:.2f}", now_s)
            return self.index
        self._trouble_since = None
        if self.index > 0:
            upper = self.rungs[self.index - 1]
            projected_load = load * upper.pixel_rate / rung.pixel_rate
            room = bitrate_bps is None or bitrate_bps >= UP_HEADROOM * needed_bitrate_bps(upper)
            if room and projected_load < UP_LOAD:
                self._headroom_since = self._headroom_since if self._headroom_since is not None else now_s
                if now_s - self._headroom_since >= self.up_hold_s:
                    self._step(-1, f"recovered: {bitrate_bps} bps, load {load:.2f}", now_s)
            else:
                self._headroom_since = None
        return self.index

    def _step(self, direction: int, reason: str, now_s: float) -> None:
        self.index += direction
        self._trouble_since = self._headroom_since = None
        self.last_reason = reason
        log.info("video: %s to %s (%s)", "down" if direction > 0 else "up", self.rungs[self.index], reason)
