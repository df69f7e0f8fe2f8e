"""Any Linux machine: model from DMI or the device tree, serial from DMI or machine-id."""
from __future__ import annotations

import hashlib

from hal.board import Board, read_text
from hal.profile import BoardProfile


class GenericBoard(Board):
    def __init__(self, profile: BoardProfile) -> None:
        super().__init__(profile)

    def _identity(self) -> tuple[str, str]:
        model = (read_text("/proc/device-tree/model") or read_text("/sys/class/dmi/id/product_name")
                 or "unknown Linux machine")
        serial = read_text("/sys/class/dmi/id/product_serial")  # root only
        if not serial or serial.lower() in ("to be filled by o.e.m.", "default string", "none"):
            serial = machine_serial()
        return model, serial


def machine_serial() -> str:
    """A stable identifier derived (not copied) from /etc/machine-id, which must stay private."""
    machine_id = read_text("/etc/machine-id") or "no-machine-id"
    return "M" + hashlib.sha256(f"roombox:{machine_id}".encode()).hexdigest()[:15].upper()
