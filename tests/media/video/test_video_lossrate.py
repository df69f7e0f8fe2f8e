"""Loss-based send rate and retransmission copies, second by second."""
from __future__ import annotations

import pytest

from media.video.lossrate import (CALM_S, DECREASE, INCREASE, VIEWER_MAX, VIEWER_STEP,
                                  ExpectedLoss, LossRate)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_loss_on_our_leg_cuts_the_rate_once_a_second_down_to_the_floor():
    clock = Clock()
    rate = LossRate(1_000_000, 150_000, 2_500_000, clock)
    assert rate.on_report(0.10) == int(1_000_000 * DECREASE)
    assert rate.on_report(0.10) == int(1_000_000 * DECREASE), "at most one step a second"
    for _ in range(30):
        clock.now += 1.0
        rate.on_report(0.10)
    assert rate.target_bps == 150_000 and "loss 10%" in rate.last_reason


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
