"""Hardware-in-the-loop: tests needing real devices skip here, stating why; on a real box
``ROOMBOX_HIL=1`` turns those skips into failures."""
from __future__ import annotations

import os

import pytest

HIL = os.environ.get("ROOMBOX_HIL") == "1"


def require_hardware(what: str, present: bool) -> None:
    """Skip (stating why) when ``what`` is absent; on a hardware-in-the-loop run, fail."""
    if present:
        return
    if HIL:
        pytest.fail(f"ROOMBOX_HIL=1 but {what} is not present")
    pytest.skip(f"{what} is not present on this machine (set ROOMBOX_HIL=1 on a real box)")
