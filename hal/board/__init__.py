"""The board: serial, model, CPU temperature, throttling, uptime, memory, disk.

A backend provides ``__init__(profile)`` (raises DeviceUnavailable when it does not apply
to this machine) and ``_identity() -> (model, serial)``, ``_cpu_temp_c()``, ``_throttling()``.
Uptime, memory and disk read the kernel's figures on every backend.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hal.device import Device
from hal.profile import BoardProfile
from hal.registry import open_backend

THERMAL_ROOT = Path("/sys/class/thermal")


class Board(Device):
    kind = "board"

    def __init__(self, profile: BoardProfile) -> None:
        super().__init__()
        self.profile = profile

    def _identity(self) -> tuple[str, str]:
        raise NotImplementedError

    def _cpu_temp_c(self) -> float | None:
        return thermal_zone_temp_c()

    def _throttling(self) -> dict[str, bool] | None:
        """None where the board cannot tell (not an error: most PCs have no such flags)."""
        return None

    def info(self) -> dict[str, Any]:
        """A fresh reading of everything the board knows (cheap; reads sysfs/procfs)."""
        model, serial = self._identity()
        return {
            "model": model,
            "serial": serial,
            "cpu_temp_c": self._cpu_temp_c(),
            "throttling": self._throttling(),
            "uptime_s": uptime_s(),
            "memory": memory(),
            "disk": disk(),
            "load_1m": round(os.getloadavg()[0], 2),
        }

    def status(self) -> dict[str, Any]:
        status = super().status()
        status.update(self.info())
        return status


def open_board(profile: BoardProfile) -> Board:
    return open_backend("board", profile.backend, lambda cls: cls(profile))


def read_text(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def thermal_zone_temp_c(root: Path = THERMAL_ROOT) -> float | None:
    """The CPU's zone (type containing "cpu" or "x86_pkg"), else the first zone that reads."""
    zones = sorted(root.glob("thermal_zone*"))
    preferred = [z for z in zones if any(k in (read_text(z / "type") or "").lower() for k in ("cpu", "x86_pkg", "soc"))]
    for zone in preferred + zones:
        raw = read_text(zone / "temp")
        if raw and raw.lstrip("-").isdigit():
            return round(int(raw) / 1000, 1)
    return None


def uptime_s() -> float | None:
    raw = read_text("/proc/uptime")
    return float(raw.split()[0]) if raw else None


def memory() -> dict[str, int] | None:
    raw = read_text("/proc/meminfo")
    if not raw:
        return None
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in raw.splitlines() if line.endswith("kB")}
    return {"total_bytes": fields.get("MemTotal", 0), "available_bytes": fields.get("MemAvailable", 0)}


def disk(path: str = "/") -> dict[str, int]:
    usage = shutil.disk_usage(path)
    return {"total_bytes": usage.total, "free_bytes": usage.free}
