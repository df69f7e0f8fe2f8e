"""Device monitor: notices a camera, microphone array or speaker that disappears (or comes
back) while the terminal runs, without opening it, and tells the state machine.

Presence is read from the kernel's device lists, so checking never disturbs a device in use
by a call: /dev/video* for V4L2, /dev/media* for libcamera, /proc/asound for ALSA cards.
"""
from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
from pathlib import Path
from typing import Callable

from hal.profile import HardwareProfile
from terminal.state import Event

log = logging.getLogger("roombox.monitor")

MONITOR_INTERVAL_S = 10.0     # a pulled device shows in status within 30 s (issue goal), here 10
ASOUND = Path("/proc/asound")
_CARD = re.compile(r"(?:^|[:,])CARD=([^,]+)")
_HW_INDEX = re.compile(r"^(?:plug)?hw:(\d+)")


def presence(kind: str, backend: str, device: str, source: str = "") -> str | None:
    """None when the device is there, else why it is missing (in a technician's words)."""
    if backend == "sim":
        if source and source not in ("pattern", "speech", "tone", "silence") and not os.path.exists(source):
            return f"simulated source '{source}' is gone"
        return None
    if backend == "v4l2":
        return None if os.path.exists(device) else f"{device} is gone (unplugged?)"
    if backend == "picamera2":
        return None if glob.glob("/dev/media*") else "no libcamera media device (ribbon cable?)"
    if backend == "alsa":
        card = _CARD.search(device)
        if card:
            return None if (ASOUND / card.group(1)).exists() else f"sound card '{card.group(1)}' is gone (unplugged?)"
        index = _HW_INDEX.match(device)
        if index:
            return None if (ASOUND / f"card{index.group(1)}").exists() else f"sound card {index.group(1)} is gone"
    return None   # "auto", "default" or an ALSA plugin: nothing to check without opening it


class DeviceMonitor:
    """Checks every ``interval_s`` and posts ``device_lost``/``device_restored`` on change."""

    def __init__(self, profile: HardwareProfile, post: Callable[[Event], None],
                 interval_s: float = MONITOR_INTERVAL_S) -> None:
        self.profile = profile
        self.post = post
        self.interval_s = interval_s
        self.missing: dict[str, str] = {}

    def check(self) -> None:
        for kind in ("camera", "microphone", "speaker"):
            section = getattr(self.profile, kind)
            why = presence(kind, section.backend, section.device, getattr(section, "source", ""))
            if why and kind not in self.missing:
                log.warning("%s: lost (%s)", kind, why, extra={"device": section.device or section.backend})
                self.post(Event("device_lost", {"kind": kind, "reason": why}))
            elif not why and kind in self.missing:
                log.info("%s: back", kind, extra={"device": section.device or section.backend})
                self.post(Event("device_restored", {"kind": kind}))
            if why:
                self.missing[kind] = why
            else:
                self.missing.pop(kind, None)

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.interval_s)
