"""Simulated board: this machine's real uptime, memory and disk, a stable serial and a
CPU temperature from the real thermal zone if any, else a plausible fixed reading."""
from __future__ import annotations

import os

from hal.board import Board, thermal_zone_temp_c
from hal.board.generic import machine_serial
from hal.profile import BoardProfile

SIM_TEMP_C = 45.0


class SimBoard(Board):
    def __init__(self, profile: BoardProfile) -> None:
        super().__init__(profile)

    def _identity(self) -> tuple[str, str]:
        return "roombox simulated board", os.environ.get("ROOMBOX_SIM_SERIAL") or "SIM" + machine_serial()[1:]

    def _cpu_temp_c(self) -> float | None:
        real = thermal_zone_temp_c()
        return real if real is not None else SIM_TEMP_C

    def _throttling(self) -> dict[str, bool]:
        return {"under_voltage": False, "throttled": False}
