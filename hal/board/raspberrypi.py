"""Raspberry Pi: model and serial from the device tree, throttling from the firmware."""
from __future__ import annotations

import shutil
import subprocess

from hal.board import Board, read_text
from hal.errors import DeviceUnavailable
from hal.profile import BoardProfile

MODEL_PATH = "/proc/device-tree/model"
SERIAL_PATH = "/proc/device-tree/serial-number"
THROTTLED_SYSFS = "/sys/devices/platform/soc/soc:firmware/get_throttled"
VCGENCMD_TIMEOUT_S = 2.0

# Bits of the firmware's get_throttled word (Raspberry Pi documentation, vcgencmd).
THROTTLE_BITS = {
    "under_voltage": 0, "freq_capped": 1, "throttled": 2, "soft_temp_limit": 3,
    "under_voltage_occurred": 16, "freq_capped_occurred": 17, "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}


class RaspberryPiBoard(Board):
    def __init__(self, profile: BoardProfile) -> None:
        super().__init__(profile)
        model = read_text(MODEL_PATH)
        if not model or "Raspberry Pi" not in model:
            found = f"reads {model!r}" if model else "is missing"
            raise DeviceUnavailable(f"board: not a Raspberry Pi ({MODEL_PATH} {found})")
        self._model = model

    def _identity(self) -> tuple[str, str]:
        serial = read_text(SERIAL_PATH) or _cpuinfo_serial() or "unknown"
        return self._model, serial

    def _throttling(self) -> dict[str, bool] | None:
        word = _throttled_word()
        if word is None:
            return None
        return {name: bool(word >> bit & 1) for name, bit in THROTTLE_BITS.items()}


def _cpuinfo_serial() -> str | None:
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        if line.startswith("Serial"):
            return line.split(":", 1)[1].strip()
    return None


def _throttled_word() -> int | None:
    raw = read_text(THROTTLED_SYSFS)
    if raw:
        return int(raw, 16)
    if shutil.which("vcgencmd"):
        try:
            out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True,
                                 timeout=VCGENCMD_TIMEOUT_S, check=True).stdout
            return int(out.strip().split("=")[1], 16)
        except (subprocess.SubprocessError, OSError, IndexError, ValueError):
            return None
    return None
