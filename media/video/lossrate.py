"""Loss-based send-rate control and retransmission redundancy for the video sender.

Through an SFU the sender sees two loss signals: RTCP receiver reports from the SFU
(``fraction_lost`` on our own leg) and keyframe requests (PLI/FIR) that the SFU forwards
from viewers whose leg lost a packet that could not be repaired. Janus 1.1.2 retransmits a
packet to a viewer at most once per 200 ms, so on a lossy viewer leg every lost packet whose
one retransmission is lost too costs a keyframe and a freeze: the only lever the sender has
there is to send fewer packets. So:
- loss ≥ ``LOSS_HIGH`` on our leg, or ``PLI_TROUBLE`` keyframe requests within
  ``PLI_WINDOW_S``, cuts the rate by ``DECREASE`` (at most once per ``UPDATE_S``);
- loss < ``LOSS_LOW`` and no keyframe request for ``CALM_S`` raises it by ``INCREASE``;
- anything between holds. REMB, when the far end sends it, stays a ceiling on top.
- ``retransmit_copies()``: Janus NACKs the publisher twice (≈12 ms, ≈155 ms) and then gives
  up, so a lost retransmission costs a keyframe for every viewer. At measured loss we send
  each requested retransmission more than once (RTX copies have their own sequence numbers,
  so SRTP replay protection keeps them; Janus drops the extra copies it does not need).
Pure logic with an injectable clock.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

LOSS_HIGH = 0.05
LOSS_LOW = 0.02
PLI_WINDOW_S = 2.0
PLI_TROUBLE = 2
CALM_S = 4.0
UPDATE_S = 1.0
DECREASE = 0.8
INCREASE = 1.08
# Extra RTX copies by loss on our leg: 0 below 3 %, 1 below 10 %, else 2.
COPIES_AT = ((0.10, 2), (0.03, 1))


class LossRate:
    """Target bitrate from loss reports and keyframe requests, within [min_bps, max_bps]."""

    def __init__(self, start_bps: int, min_bps: int, max_bps: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not min_bps <= start_bps <= max_bps:
            raise ValueError(f"loss rate: start_bps {start_bps} must lie within "
                             f"min_bps {min_bps} .. max_bps {max_bps}")
        self.rate_bps = float(start_bps)
        self.min_bps, self.max_bps = min_bps, max_bps
        self._clock = clock
        self.fraction_lost = 0.0
        self._requests: deque[float] = deque()
        self._last_update = float("-inf")
        self.last_reason = "start"

    def on_report(self, fraction_lost: float) -> int:
        """An RTCP receiver report about our stream; returns the target bitrate."""
        self.fraction_lost = fraction_lost
        return self._update()

    def on_keyframe_request(self) -> int:
        """A PLI/FIR reached us (a viewer could not repair its picture)."""
        self._requests.append(self._clock())
        return self._update()

    def retransmit_copies(self) -> int:
        """How many times to send each requested retransmission."""
        for threshold, extra in COPIES_AT:
            if self.fraction_lost >= threshold:
                return 1 + extra
        return 1

    @property
    def target_bps(self) -> int:
        return int(self.rate_bps)

    def _update(self) -> int:
        now = self._clock()
        while self._requests and now - self._requests[0] > max(PLI_WINDOW_S, CALM_S):
            self._requests.popleft()
        if now - self._last_update < UPDATE_S:
            return self.target_bps
        recent = sum(now - t <= PLI_WINDOW_S for t in self._requests)
        if self.fraction_lost >= LOSS_HIGH or recent >= PLI_TROUBLE:
            self.rate_bps = max(self.min_bps, self.rate_bps * DECREASE)
            self.last_reason = (f"loss {self.fraction_lost:.0%}" if self.fraction_lost >= LOSS_HIGH
                                else f"{recent} keyframe requests in {PLI_WINDOW_S:.0f} s")
        elif self.fraction_lost < LOSS_LOW and not self._requests:
            self.rate_bps = min(self.max_bps, self.rate_bps * INCREASE)
            self.last_reason = "clean"
        else:
            self.last_reason = "holding"
        self._last_update = now
        return self.target_bps


# How much loss the in-band FEC plans for (fec.py): what the SFU reports on our leg, and
# what the viewers' keyframe requests say about the legs we cannot see. Janus forwards a
# viewer's PLI but none of its receiver reports, so a viewer that keeps losing frames
# shows up only as repeated keyframe requests: each one that makes ``REQUESTS_TO_STEP``
# within ``REQUEST_WINDOW_S`` (a lone one is a viewer joining) raises the plan by
# ``VIEWER_STEP``, up to ``VIEWER_MAX``; calm lets it sink back at ``VIEWER_DECAY_PER_S``.
# The cap is what a 30 % viewer leg needs (bench/loss.py: 3.3 % bad windows at 30 % loss
# there, 7.2 % with a 15 % cap). A viewer whose CPU is overloaded also drops frames and asks
# for keyframes, and parity (more packets to process) would make that worse; a floor does
# (a 10 % floor overloaded bench/join.py's 4-party call), but on a clean call the few
# keyframe requests of joining and overload never make a step (0-3 per participant a
# minute there, plan 0 %).
REQUEST_WINDOW_S = 10.0
REQUESTS_TO_STEP = 3
VIEWER_STEP = 0.05
VIEWER_MAX = 0.30
VIEWER_DECAY_PER_S = 0.001
REPORT_SMOOTHING = 0.5          # weight of the newest receiver report


class ExpectedLoss:
    """The loss (0..1) the video FEC is planned for, never below ``floor``."""

    def __init__(self, floor: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.floor = floor
        self._clock = clock
        self.reported = 0.0
        self._viewers = floor
        self._viewers_at = clock()
        self._requests: deque[float] = deque()
        self.requests = 0

    def on_report(self, fraction_lost: float) -> float:
        """An RTCP receiver report from the SFU about our leg."""
        self.reported += REPORT_SMOOTHING * (fraction_lost - self.reported)
        return self.value

    def on_keyframe_request(self) -> float:
        now = self._clock()
        self.requests += 1
        self._requests.append(now)
        while now - self._requests[0] > REQUEST_WINDOW_S:
            self._requests.popleft()
        if len(self._requests) >= REQUESTS_TO_STEP:
            self._viewers = min(VIEWER_MAX, self.viewers + VIEWER_STEP)
            self._viewers_at = now
        return self.value

    @property
    def viewers(self) -> float:
        """What repeated keyframe requests suggest about the viewers' legs (decayed)."""
        decayed = self._viewers - VIEWER_DECAY_PER_S * (self._clock() - self._viewers_at)
        return max(self.floor, decayed)

    @property
    def value(self) -> float:
        return max(self.floor, self.reported, self.viewers)
