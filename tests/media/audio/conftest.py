"""Fixtures of the audio tests; the signal helpers live in ``simulated.py``."""
from __future__ import annotations

import pytest

from tests.media.audio import simulated


@pytest.fixture
def room():
    return {"speech_like": simulated.speech_like, "room_response": simulated.room_response,
            "run": simulated.run, "erle_db": simulated.erle_db}
