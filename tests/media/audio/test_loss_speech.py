"""End to end: speech through a real Janus VideoRoom with 20 % random UDP loss (nftables,
both directions) on the subscriber's leg stays intelligible with our send and receive path
(issue 9, Milestone 1: STOI >= 0.75 at 20 %). Stock aiortc measured the same way keeps
~0.3 (bench/loss_audio.py, bench/README.md "Network loss — speech")."""
from __future__ import annotations

import pytest

from tests.janus import in_janus_netns, janus, loopback_ice  # noqa: F401  (fixtures)
from tests.media.audio.speech_call import speech_call

SPEECH_S = 10.0
LOSS_PCT = 20


@pytest.mark.timeout(90)
async def test_speech_stays_intelligible_at_20_percent_loss_through_janus(in_janus_netns):
    result = await speech_call(in_janus_netns, LOSS_PCT, "sub", SPEECH_S, "ours", room=9020)
    playout = result["playout"]
    assert result["janus_offers_fec"], "Janus did not negotiate Opus in-band FEC with the subscriber"
    assert result["stoi"] >= 0.75, result
    assert result["missing"] <= 0.01, result          # every 20 ms slot was played
    # Loss really happened and FEC really rebuilt packets (not just concealment).
    expected = SPEECH_S * 50
    assert 0.10 * expected <= playout["fec_recovered"] + playout["concealed"] <= 0.40 * expected, playout
    assert playout["fec_recovered"] > playout["concealed"], playout
    assert result["latency_ms"] < 150, result
