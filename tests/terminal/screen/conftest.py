"""Room-screen fixtures: one offscreen 1080p display and the fonts, shared by a module."""
from __future__ import annotations

import pytest

from hal.display import open_display
from hal.profile import DisplayProfile
from terminal.screen.fonts import Fonts


@pytest.fixture(scope="module")
def fonts():
    return Fonts()


@pytest.fixture(scope="module")
def display():
    with open_display(DisplayProfile(backend="offscreen", width=1920, height=1080)) as shown:
        yield shown
