"""Loss-based send rate and retransmission copies, second by second."""
from __future__ import annotations

import random

import pytest

from media.video.lossrate import (CALM_S, COPY_PACKET_BYTES, DECREASE, EXTRA_COPY_SHARE, INCREASE,
                                  VIEWER_MAX, VIEWER_STEP, CopyBudget, ExpectedLoss, LossRate)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_link(rate: LossRate, clock: Clock, loss_at, seconds: int) -> list[int]:
    """One receiver report a second; ``loss_at(t, bps)`` is the loss the link gives the
    rate sent during the second before."""
    rates = []
    for t in range(seconds):
        clock.now += 1.0
        rate.on_report(loss_at(t, rate.target_bps))
        rates.append(rate.target_bps)
    return rates


def test_loss_from_a_congested_link_cuts_the_rate_to_what_the_link_carries():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    capacity = 400_000
    rates = run_link(rate, clock, lambda t, bps: max(0.0, 1 - capacity / bps), 120)
    assert rates[0] < 1_000_000, "the first report of 60 % loss cuts at once"
    settled = rates[30:]
    assert max(settled) <= 1.25 * capacity and min(settled) >= 0.6 * capacity, settled
    assert sum(settled) / len(settled) <= 1.05 * capacity
    assert rate.inherent < 0.02, "congestion loss is never taken for the link's own"


def test_behind_a_policer_the_rate_stays_under_where_loss_began_instead_of_overshooting():
    """A policer loses nothing below its rate and a burst's worth above it (at least 8 %),
    so the hold band never catches the climb: before, the rate went over the capacity a
    third of the time (183 of 540 s), each time a freeze. Now it stays under where loss
    began and probes slowly: over it less than 5 % of the time, at the same mean rate."""
    for capacity in (500_000, 1_000_000):
        clock = Clock()
        rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
        policer = lambda t, bps: 0.0 if bps <= capacity else max(0.08, 1 - capacity / bps)  # noqa: E731
        settled = run_link(rate, clock, policer, 600)[60:]
        over = sum(r > capacity for r in settled)
        assert over <= 0.05 * len(settled), (capacity, over)
        assert sum(settled) / len(settled) >= 0.85 * capacity
        assert rate.ceiling_bps is not None and "where loss began" in rate.last_reason


def test_a_ceiling_is_forgotten_when_the_link_gets_better():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    run_link(rate, clock, lambda t, bps: 0.0 if bps <= 600_000 else max(0.08, 1 - 600_000 / bps), 60)
    assert rate.target_bps < 600_000 and rate.ceiling_bps is not None
    rates = run_link(rate, clock, lambda t, bps: 0.0, 240)
    assert rates[-1] == 2_500_000 and rate.ceiling_bps is None


def reported_loss(rng: random.Random, loss: float, bps: int) -> float:
    """One receiver report's fraction lost: a second's packets (~1,100 bytes each), each
    lost at random with probability ``loss`` — the noise real reports carry."""
    packets = max(10, round(bps / 8 / 1100))
    return sum(rng.random() < loss for _ in range(packets)) / packets


@pytest.mark.parametrize("loss", [0.10, 0.30])
def test_noisy_reports_of_random_loss_do_not_ratchet_the_rate_down(loss):
    """Random loss reported with the scatter of real reports (30 % loss at 700 kbit/s: one
    report in four above 35 %): a cut for each high report that is then taken for
    congestion by chance drove the rate to its floor within 90 s, where the picture had
    no parity left (a third of the time frozen through Janus)."""
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    rng = random.Random(7)
    rates = run_link(rate, clock, lambda t, bps: reported_loss(rng, loss, bps), 300)
    assert min(rates[60:]) >= 0.5 * 2_500_000, (min(rates[60:]), rate.last_reason)
    assert rate.repairable_loss >= 0.6 * loss, "the parity keeps planning for the link's loss"


def test_loss_that_does_not_fall_with_the_rate_is_the_links_own_and_stops_cutting():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    rates = run_link(rate, clock, lambda t, bps: 0.10, 60)
    assert min(rates) >= int(1_000_000 * DECREASE), "one cut to test the loss, no more"
    assert rates[-1] == 2_500_000, "the FEC repairs random loss: the picture keeps its rate"
    assert rate.inherent == pytest.approx(0.10) and "link's own" in rate.last_reason
    # When the link clears, the loss it had stops excusing loss.
    run_link(rate, clock, lambda t, bps: 0.0, 30)
    assert rate.inherent < 0.01


def test_congestion_on_a_lossy_link_is_still_cut_to_what_the_link_carries():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    run_link(rate, clock, lambda t, bps: 0.10, 60)
    capacity = 600_000
    rates = run_link(rate, clock, lambda t, bps: 1 - 0.9 * min(1.0, capacity / bps), 120)
    settled = rates[40:]
    assert sum(settled) / len(settled) <= 1.1 * capacity and min(settled) >= 0.5 * capacity, settled


def test_forwarded_keyframe_requests_count_as_loss_downstream():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    rate.on_keyframe_request()
    assert rate.target_bps == 1_000_000 and rate.last_reason == "holding", "one PLI is no trend"
    clock.now += 1.0
    assert rate.on_keyframe_request() == int(1_000_000 * DECREASE)
    assert "keyframe requests" in rate.last_reason


def test_a_clean_link_raises_the_rate_slowly_after_a_calm_spell_up_to_the_cap():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 1_100_000, clock)
    rate.on_keyframe_request()
    clock.now += CALM_S - 0.5
    assert rate.on_report(0.0) == 1_000_000, "a recent keyframe request holds the rate"
    clock.now += 1.0
    assert rate.on_report(0.0) == int(1_000_000 * INCREASE)
    for _ in range(10):
        clock.now += 1.0
        rate.on_report(0.0)
    assert rate.target_bps == 1_100_000


def test_retransmission_copies_follow_the_loss_on_our_leg():
    rate = LossRate(1_000_000, 150_000, 2_500_000, Clock())
    copies = []
    for loss in (0.0, 0.02, 0.05, 0.2):
        rate.on_report(loss)
        copies.append(rate.retransmit_copies())
    assert copies == [1, 1, 2, 3]


def test_a_start_rate_outside_the_bounds_is_refused_with_the_values():
    with pytest.raises(ValueError, match="start_bps 100000.*150000"):
        LossRate(100_000, 150_000, 2_500_000)


def test_fec_plans_for_the_floor_our_legs_reports_and_viewers_repeated_keyframe_requests():
    clock = Clock()
    plan = ExpectedLoss(0.10, clock)
    assert plan.value == 0.10
    assert plan.on_report(0.30) == pytest.approx(0.15)          # smoothed: half the step
    assert plan.on_report(0.30) == pytest.approx(0.225)
    for _ in range(10):
        plan.on_report(0.0)
    assert plan.value == pytest.approx(0.10), "back to the floor on a clean leg"
    # A lone keyframe request (a viewer joining), or two, change nothing.
    assert plan.on_keyframe_request() == pytest.approx(0.10)
    clock.now += 2
    assert plan.on_keyframe_request() == pytest.approx(0.10)
    clock.now += 30
    assert plan.on_keyframe_request() == pytest.approx(0.10)
    # Requests that keep coming mean a viewer's leg loses packets we never hear about.
    for _ in range(2):
        clock.now += 2
        plan.on_keyframe_request()
    assert plan.value == pytest.approx(0.10 + VIEWER_STEP)
    for _ in range(40):
        clock.now += 1
        plan.on_keyframe_request()
    assert plan.value == pytest.approx(VIEWER_MAX)
    clock.now += 600
    assert plan.value == pytest.approx(0.10), "calm lets it sink back to the floor"


def test_redundancy_plans_for_random_loss_but_not_for_loss_that_fell_with_the_rate():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    run_link(rate, clock, lambda t, bps: 0.10, 30)
    assert rate.repairable_loss == pytest.approx(0.10) and rate.retransmit_copies() == 3
    congested = LossRate(1_000_000, 150_000, 2_500_000, clock)
    run_link(congested, clock, lambda t, bps: max(0.0, 1 - 400_000 / bps), 30)
    assert congested.repairable_loss < 0.02 and congested.retransmit_copies() == 1, \
        "parity and copies for congestion loss would only add to the queue that drops it"


def test_extra_retransmission_copies_keep_to_a_fifth_of_the_rate():
    clock = Clock()
    budget = CopyBudget(clock=clock)
    rate_bps = 1_200_000
    per_s = EXTRA_COPY_SHARE * rate_bps / 8 / COPY_PACKET_BYTES            # 25 copies a second
    assert budget.allow(10, rate_bps) == 0, "nothing saved up at the start"
    clock.now += 10.0                          # a long calm saves one second's worth, no more
    assert budget.allow(1000, rate_bps) == int(per_s)
    assert budget.allow(10, rate_bps) == 0, "spent"
    clock.now += 0.4
    assert budget.allow(100, rate_bps) == int(0.4 * per_s)
    clock.now += 1.0
    assert budget.allow(100, 150_000) == int(EXTRA_COPY_SHARE * 150_000 / 8 / COPY_PACKET_BYTES), \
        "at a low rate, few copies"
