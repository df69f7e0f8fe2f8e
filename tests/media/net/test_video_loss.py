"""A call through a real Janus with 10 % random UDP loss (nftables) on one leg, both ways:
the issue's milestone 1 for video — at least 15 fps and at most 5 % of 100 ms windows
frozen or corrupt — on either leg, with no corrupt frame shown. bench/loss.py measures the
same over 5 minutes and at other loss levels (bench/README.md, "Network loss")."""
from __future__ import annotations

import pytest

from tests.media.net.video_call import call

LOSS_PCT = 10
SECONDS = 25
MAX_BAD_PCT = 5           # milestone 1; measured 0.2-0.3 % over 3 minutes (bench/README.md), 0-1.2 % here
MAX_FREEZE_S = 1.0        # stock aiortc blocks ~2.4 s per unrepaired packet


@pytest.mark.parametrize("leg", ["pub", "sub"])
async def test_ten_percent_loss_on_either_leg_keeps_video_usable_and_intact(in_janus_netns, leg):
    result = await call(in_janus_netns, "ours", leg, LOSS_PCT, SECONDS, warmup_s=2.0,
                        size="240p", psnr_db=22.0)
    summary = {k: result[k] for k in ("bad_pct", "longest_freeze_s", "fps", "corrupt_frames", "dropped")}
    print(f"10 % {leg}-leg loss:", summary, result["receiver"])
    assert result["dropped"] > 0, f"the loss rules dropped nothing: {summary}"
    assert result["corrupt_frames"] == 0, f"a broken picture reached the screen: {summary}"
    assert result["fps"] >= 15, summary
    assert result["longest_freeze_s"] <= MAX_FREEZE_S, summary
    assert result["bad_pct"] <= MAX_BAD_PCT, summary
    assert result["receiver"]["fec_rebuilt"] > 0, "the parity rebuilt nothing"
