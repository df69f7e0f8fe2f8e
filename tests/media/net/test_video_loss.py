"""A call through a real Janus with 10 % random UDP loss (nftables) on one leg, both ways:
our sender and receiver keep the picture moving — no corrupt frame shown, no long freeze.

The bounds are this stack's measured behaviour with room for a loaded 2-core machine, not
the issue's milestone (≤ 5 % frozen-or-corrupt windows): bench/loss.py measures that, and
bench/README.md ("Network loss") says where it stands and why."""
from __future__ import annotations

from tests.media.net.video_call import call

LOSS_PCT = 10
SECONDS = 25
MAX_BAD_PCT = 35          # measured 9-23 % at load 4-11 (2 cores); stock aiortc: see bench/README.md
MAX_FREEZE_S = 3.0        # stock aiortc blocks ~2.4 s per unrepaired packet


async def test_ten_percent_loss_on_the_publisher_leg_keeps_video_moving_and_intact(in_janus_netns):
    result = await call(in_janus_netns, "ours", "pub", LOSS_PCT, SECONDS, warmup_s=2.0,
                        size="240p", psnr_db=22.0)
    summary = {k: result[k] for k in ("bad_pct", "longest_freeze_s", "fps", "corrupt_frames", "dropped")}
    print("10 % pub-leg loss:", summary)
    assert result["dropped"] > 0, f"the loss rules dropped nothing: {summary}"
    assert result["corrupt_frames"] == 0, f"a broken picture reached the screen: {summary}"
    assert result["fps"] >= 15, summary
    assert result["longest_freeze_s"] <= MAX_FREEZE_S, summary
    assert result["bad_pct"] <= MAX_BAD_PCT, summary
    assert result["receiver"]["recovered"] > 0, "NACKs repaired nothing"
