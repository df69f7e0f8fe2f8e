"""Loss-based send-rate control and retransmission redundancy for the video sender.

Through an SFU the sender sees two loss signals: RTCP receiver reports from the SFU
(``fraction_lost`` on our own leg) and keyframe requests (PLI/FIR) that the SFU forwards
from viewers whose leg lost a packet that could not be repaired. Janus 1.1.2 retransmits a
packet to a viewer at most once per 200 ms, so on a lossy viewer leg every lost packet whose
one retransmission is lost too costs a keyframe and a freeze: the only lever the sender has
there is to send fewer packets. So:
- loss ≥ ``LOSS_HIGH`` above the link's own loss (below) cuts the rate to what got
  through (at least by ``DECREASE``); ``PLI_TROUBLE`` keyframe requests within
  ``PLI_WINDOW_S`` cut it by ``DECREASE``; at most one step per ``UPDATE_S``;
- loss < ``LOSS_LOW`` above the link's own and no keyframe request for ``CALM_S`` raises it
  by ``INCREASE``;
- anything between holds. REMB, when the far end sends it, stays a ceiling on top.
- Reports scatter: a second's fraction lost of ~80 packets at 30 % loss is 30 ± 5 %. Both
  tests above (is the loss high? did it fall?) also require the difference to stand
  ``NOISE_SIGMAS`` standard deviations above that scatter, from the loss and the packets a
  report covers at the current rate; without it every fourth report looked like new
  congestion, and every fourth probe like an answer.
- Where loss began: once a cut showed congestion, the rate it was cut from is remembered
  (``ceiling_bps``). For ``CONGESTION_MEMORY_S`` the rate stays under
  ``HOLD_BELOW_CEILING`` of it, then climbs by ``INCREASE_NEAR`` a step from
  ``NEAR_CEILING`` of it, instead of overshooting at full speed every time (behind a
  1 Mbit/s policer: an overshoot every ~25 s, each a freeze of several seconds). Climbing
  ``FORGET_CEILING`` past it without loss forgets it: the link got better.
- The link's own loss: loss that a congested queue causes falls when we send less; the
  random loss of a radio link does not, and cutting for it only starves the picture (the
  FEC repairs it). So after a loss cut the rate holds until ``PROBE_REPORTS`` reports
  describe the new rate; if the loss did not fall it is the link's own (``inherent``) and
  from then on only loss above it counts. ``inherent`` follows the loss down within
  seconds and rises only by this test.
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
INCREASE_NEAR = 1.01
NEAR_CEILING = 0.85
HOLD_BELOW_CEILING = 0.9
FORGET_CEILING = 1.15
LOSS_SMOOTHING = 0.5     # weight of the newest report (Janus reports about once a second)
# The smoothed loss scatters by this share of one report's scatter (EWMA of independent reports).
SMOOTHED_SCATTER = (LOSS_SMOOTHING / (2 - LOSS_SMOOTHING)) ** 0.5
SETTLE_S = 1.0           # after a cut, reports this much later describe the new rate
PROBE_REPORTS = 2        # ... and this many of them are compared with the two before it
PROBE_TIMEOUT_S = 6.0    # no reports: give up the comparison
LOSS_ANSWERS = 0.02      # the loss answered the cut if it fell at least this much
ANSWER_SHARE = 0.4       # ... or this share of what a cut takes off congestion loss
INHERENT_MAX = 0.5       # beyond this a call is lost anyway: keep cutting
INHERENT_FALL = 0.2      # per report, toward a lower loss
NOISE_SIGMAS = 2.5
REPORT_S = 1.0               # Janus sends a receiver report about once a second
REPORT_PACKET_BYTES = 1100   # what a video packet is counted as, for the report's scatter
CONGESTION_MEMORY_S = 30.0   # after loss answered a cut, parity and copies plan for less
# Extra RTX copies by loss on our leg: 0 below 3 %, 1 below 10 %, else 2.
COPIES_AT = ((0.10, 2), (0.03, 1))
EXTRA_COPY_SHARE = 0.2       # extra retransmission copies may take this share of the rate
COPY_PACKET_BYTES = 1200     # what one copy is counted as (H.264 packets are ≤ ~1200 bytes)


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
        self.smoothed_loss = 0.0
        self.inherent = 0.0
        self._reports: deque[tuple[float, float]] = deque(maxlen=8)   # (time, fraction lost)
        # (time of the cut, loss and rate before it)
        self._probe: tuple[float, float, float] | None = None
        self.ceiling_bps: float | None = None
        self._congested_at = float("-inf")
        self._requests: deque[float] = deque()
        self._last_update = float("-inf")
        self.last_reason = "start"

    def on_report(self, fraction_lost: float) -> int:
        """An RTCP receiver report about our stream; returns the target bitrate."""
        self.fraction_lost = fraction_lost
        self._reports.append((self._clock(), fraction_lost))
        self.smoothed_loss += LOSS_SMOOTHING * (fraction_lost - self.smoothed_loss)
        if self.smoothed_loss < self.inherent:
            # Follows the loss down within seconds, not at once: a lucky report must not
            # turn the link's own loss into "excess" and cost two cuts.
            self.inherent += INHERENT_FALL * (self.smoothed_loss - self.inherent)
        return self._update()

    def on_keyframe_request(self) -> int:
        """A PLI/FIR reached us (a viewer could not repair its picture)."""
        self._requests.append(self._clock())
        return self._update()

    def retransmit_copies(self) -> int:
        """How many times to send each requested retransmission."""
        for threshold, extra in COPIES_AT:
            if self.repairable_loss >= threshold:
                return 1 + extra
        return 1

    @property
    def congested(self) -> bool:
        """Our own leg is losing packets to congestion (now, or a cut showed it lately)."""
        return (self._clock() - self._congested_at < CONGESTION_MEMORY_S
                or self.excess_loss >= LOSS_HIGH)

    @property
    def repairable_loss(self) -> float:
        """The loss that redundancy (parity, retransmission copies) should plan for. Until a
        cut has shown otherwise, all of it (most loss on a radio link is random); after
        loss fell with the rate, only the link's own for ``CONGESTION_MEMORY_S``: redundancy
        for congestion loss only adds to the queue that drops it."""
        if self._clock() - self._congested_at < CONGESTION_MEMORY_S or self._near_ceiling:
            return self.inherent
        return self.smoothed_loss

    @property
    def _near_ceiling(self) -> bool:
        """Close to where congestion was found: loss here is that congestion again."""
        return self.ceiling_bps is not None and self.rate_bps >= NEAR_CEILING * self.ceiling_bps

    @property
    def target_bps(self) -> int:
        return int(self.rate_bps)

    @property
    def excess_loss(self) -> float:
        """Loss above the link's own: what sending less could cure."""
        return max(0.0, self.smoothed_loss - self.inherent)

    def _update(self) -> int:
        now = self._clock()
        while self._requests and now - self._requests[0] > max(PLI_WINDOW_S, CALM_S):
            self._requests.popleft()
        if self._probe is not None:
            self._judge_probe(now)
        if now - self._last_update < UPDATE_S:
            return self.target_bps
        recent = sum(now - t <= PLI_WINDOW_S for t in self._requests)
        high = max(LOSS_HIGH, NOISE_SIGMAS * SMOOTHED_SCATTER * self._report_scatter(self.inherent))
        congested = self.excess_loss >= high and self._probe is None
        if congested:
            # Down to what got through: a link that carries C of our R loses 1 - C/R, so
            # R (1 - loss) is C. Then hold and see whether the loss answers.
            before_bps = self.rate_bps
            self.rate_bps = max(self.min_bps, self.rate_bps * min(DECREASE, 1 - self.excess_loss))
            self._probe = (now, self._recent_loss(before=now), before_bps)
            self.last_reason = f"loss {self.smoothed_loss:.0%}"
        elif recent >= PLI_TROUBLE:
            self.rate_bps = max(self.min_bps, self.rate_bps * DECREASE)
            self.last_reason = f"{recent} keyframe requests in {PLI_WINDOW_S:.0f} s"
        elif self._probe is not None:
            self.last_reason = "holding: does the loss fall with the rate?"
        elif self.excess_loss < LOSS_LOW and not self._requests:
            self._increase()
        else:
            self.last_reason = "holding"
        self._last_update = now
        return self.target_bps

    def _increase(self) -> None:
        ceiling = self.ceiling_bps
        recent = self._clock() - self._congested_at < CONGESTION_MEMORY_S
        near = self._near_ceiling
        rate = self.rate_bps * (INCREASE_NEAR if near else INCREASE)
        if ceiling is not None and recent:
            rate = max(self.rate_bps, min(rate, HOLD_BELOW_CEILING * ceiling))
        self.rate_bps = min(self.max_bps, rate)
        self.last_reason = "clean" if self.inherent < LOSS_LOW else \
            f"loss {self.inherent:.0%} is the link's own (did not fall with the rate)"
        if near:
            how = "held" if recent else "slowly"
            self.last_reason += f", {how} below {ceiling / 1e6:.2f} Mbit/s where loss began"
        if ceiling is not None and self.rate_bps > FORGET_CEILING * ceiling:
            self.ceiling_bps = None

    def _report_scatter(self, loss: float) -> float:
        """Standard deviation of one report's fraction lost at ``loss`` and today's rate."""
        packets = max(10.0, self.rate_bps * REPORT_S / (8 * REPORT_PACKET_BYTES))
        return (max(loss, 0.01) * (1 - loss) / packets) ** 0.5

    def _recent_loss(self, before: float | None = None, after: float | None = None) -> float:
        picked = [loss for t, loss in self._reports
                  if (before is None or t <= before) and (after is None or t >= after)]
        picked = picked[-PROBE_REPORTS:] if before is not None else picked[:PROBE_REPORTS]
        return sum(picked) / len(picked) if picked else self.smoothed_loss

    def _judge_probe(self, now: float) -> None:
        """After a loss cut: did the loss fall with the rate (congestion) or not (the
        link's own)?"""
        cut_at, before, before_bps = self._probe
        settled = [t for t, _ in self._reports if t >= cut_at + SETTLE_S]
        if len(settled) < PROBE_REPORTS:
            if now - cut_at > PROBE_TIMEOUT_S:
                self._probe = None
            return
        after = self._recent_loss(after=cut_at + SETTLE_S)
        self._probe = None
        # Congestion loss 1 - C/R falls to 1 - C/(0.8 R): by a quarter of what got through.
        excess = before - self.inherent
        answer = max(LOSS_ANSWERS, ANSWER_SHARE * min(excess, (1 - before) * (1 / DECREASE - 1)),
                     # two means of PROBE_REPORTS reports each: their difference scatters
                     # by one report's scatter (for two reports each)
                     NOISE_SIGMAS * self._report_scatter(after) * (2 / PROBE_REPORTS) ** 0.5)
        if before - after < answer and after <= INHERENT_MAX:
            self.inherent = max(self.inherent, after)
            self.smoothed_loss = after
        else:
            self._congested_at = now
            self.ceiling_bps = before_bps


class CopyBudget:
    """How many extra retransmission copies may go now: ``share`` of the target rate, one
    second of burst. The copies are not in the encoder's budget; unbudgeted, on a congested
    link they kept the loss up whatever the rate (56,000 copies a minute behind a 1 Mbit/s
    bottleneck) and so passed the loss off as the link's own."""

    def __init__(self, share: float = EXTRA_COPY_SHARE, packet_bytes: int = COPY_PACKET_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.share, self.packet_bytes = share, packet_bytes
        self._clock = clock
        self._tokens = 0.0
        self._refilled = clock()

    def allow(self, wanted: int, rate_bps: float) -> int:
        now = self._clock()
        per_s = self.share * rate_bps / 8 / self.packet_bytes
        self._tokens = min(per_s, self._tokens + (now - self._refilled) * per_s)
        self._refilled = now
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted


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
