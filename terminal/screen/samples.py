"""Known states of the room screen, for screenshots (``make screenshots``), tests and the
benchmark: each sample is a status aggregate as Terminal.status() gives it, at a fixed time.

``python -m terminal.screen.samples DIR`` renders every sample to ``DIR/<name>.png``
on the offscreen display.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import logging
import sys
from pathlib import Path
from typing import Any

from hal.camera.sim import SimCamera
from hal.display import open_display
from hal.profile import CameraProfile, DisplayProfile
from terminal.screen.compositor import Compositor
from terminal.screen.fonts import Fonts
from terminal.screen.model import build
from terminal.screen.renderer import render

NOW = dt.datetime(2026, 11, 23, 9, 52, tzinfo=dt.timezone(dt.timedelta(hours=1)))
VERIFICATION_URL = "https://rooms.example.org/activate?code=WDJB-MJHT"
BOARD = {"model": "Raspberry Pi 5 Model B Rev 1.0", "serial": "RBX-5D2A-0191", "cpu_temp_c": 52.0,
         "throttling": {"under_voltage": False, "throttled": False},
         "memory": {"total_bytes": 4_000_000_000, "available_bytes": 2_900_000_000},
         "disk": {"total_bytes": 32_000_000_000, "free_bytes": 21_500_000_000}, "load_1m": 0.4}
PARTICIPANTS = (("p1", "Amara Okafor"), ("p2", "李华 (Li Hua)"), ("p3", "Jonas Weber"), ("p4", "Sofía Ruiz"))


def _at(hours: int, minutes: int) -> str:
    return NOW.replace(hour=hours, minute=minutes).isoformat()


BASE: dict[str, Any] = {
    "profile": "pi5-usb", "state": "idle", "reason": "ready", "muted": False, "lost_devices": {},
    "notices": [], "transitions": 2, "uptime_s": 86_523.0, "board": BOARD, "devices": {},
    "room": {"name": "Kilimanjaro – 3rd floor"},
    "meeting": "janus+https://meet.example.org/janus?room=4711&pin=***", "calendar_meeting": None,
    "network": {"online": True, "interface": "eth0", "address": "10.20.30.41"},
    "calendar": {"events": [
        {"title": "Design review: onboarding flow", "start": _at(10, 0), "end": _at(10, 45)},
        {"title": "Weekly sync with the Nairobi office", "start": _at(11, 30), "end": _at(12, 0)},
        {"title": "Quarterly planning", "start": _at(14, 0), "end": _at(15, 30)},
        {"title": "Finished earlier", "start": _at(8, 0), "end": _at(9, 0)}]},
}
MEETING_URL = "janus+https://meet.example.org/janus?room=4711&pin=***"
UPCOMING = {"summary": "Design review: onboarding flow", "start": _at(10, 0), "end": _at(10, 45)}
SESSION = {"connected": True, "duration_s": 754, "rtt_ms": 42.0, "loss": 0.002, "rx_fps": 29.8}


def _in_call(**session: Any) -> dict[str, Any]:
    return {"state": "in_call", "reason": "connected", "call": MEETING_URL, "upcoming": UPCOMING,
            "call_session": {**SESSION, **session}}


def _sample(**changes: Any) -> dict[str, Any]:
    status = copy.deepcopy(BASE)
    status.update(changes)
    return status


SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (status, options: language, technician, participants, layout, active)
    "booting": (_sample(state="booting", reason="starting"), {}),
    "idle": (_sample(calendar={"events": BASE["calendar"]["events"][1:]}), {}),
    "idle-upcoming": (_sample(upcoming=UPCOMING), {}),
    "idle-nothing-to-join": (_sample(meeting=None, calendar={"events": []}), {}),
    "idle-zh": (_sample(room={"name": "长城会议室（三楼）", "language": "zh"},
                        calendar={"events": [{"title": "产品评审", "start": _at(10, 0), "end": _at(10, 45)},
                                             {"title": "周会", "start": _at(14, 0), "end": _at(15, 0)}]}), {}),
    "unprovisioned": (_sample(state="unprovisioned", reason="not enrolled", room={},
                              provisioning={"user_code": "WDJB-MJHT", "verification_uri": VERIFICATION_URL}),
                      {}),
    "unprovisioned-zh": (_sample(state="unprovisioned", reason="not enrolled", room={"language": "zh"},
                                 provisioning={"user_code": "WDJB-MJHT", "verification_uri": VERIFICATION_URL}),
                         {}),
    "joining": (_sample(state="joining", reason="join pressed", call=MEETING_URL, upcoming=UPCOMING), {}),
    "in-call-grid": (_sample(**_in_call()), {"participants": 4, "layout": "grid", "active": "p2"}),
    "in-call-speaker": (_sample(**_in_call(rtt_ms=220.0), muted=True),
                        {"participants": 4, "layout": "speaker", "active": "p3"}),
    "in-call-waiting": (_sample(**_in_call(duration_s=12)), {"participants": 0}),
    "leaving": (_sample(state="leaving", reason="leave pressed", call=MEETING_URL, upcoming=UPCOMING), {}),
    "degraded": (_sample(state="degraded", reason="camera: unavailable (no frames for 5 s on /dev/video0)",
                         lost_devices={"camera": "unavailable (no frames for 5 s on /dev/video0)"}), {}),
    "degraded-zh": (_sample(state="degraded", reason="camera: unavailable",
                            room={"name": "长城会议室", "language": "zh"},
                            lost_devices={"camera": "unavailable (no frames for 5 s on /dev/video0)"}), {}),
    "technician": (_sample(lost_devices={}, state="idle"), {"technician": True}),
}


def participant_frames(count: int, width: int = 1280, height: int = 720) -> list:
    """One stamped test-pattern frame per participant, from the simulated camera."""
    camera = SimCamera(CameraProfile(width=width, height=height, fps=60))
    try:
        return [camera.capture() for _ in range(count)]
    finally:
        camera.close()


def fill(compositor: Compositor, count: int, *, active: str | None = None, frames: list | None = None) -> None:
    """Put ``count`` sample participants (and a self-view) into ``compositor``."""
    frames = frames or participant_frames(count + 1)
    for (pid, name), frame in zip(PARTICIPANTS[:count], frames):
        compositor.update_participant(pid, name, frame)
    compositor.set_active_speaker(active)
    compositor.update_self_view(frames[-1])


def render_sample(name: str, display, fonts: Fonts, frames: list | None = None):
    """Render sample ``name`` on ``display``; returns (regions, placed, model)."""
    status, options = SAMPLES[name]
    model = build(status, NOW, layout=options.get("layout", "auto"), technician=options.get("technician", False))
    compositor = Compositor()
    if model.screen == "in_call":
        fill(compositor, options.get("participants", 0), active=options.get("active"), frames=frames)
    regions, placed = render(display.canvas(), fonts, model, compositor)
    display.present()
    return regions, placed, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render every room-screen sample to PNG.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT (default 1920x1080)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    width, height = (int(v) for v in args.size.split("x"))
    args.directory.mkdir(parents=True, exist_ok=True)
    display = open_display(DisplayProfile(backend="offscreen", width=width, height=height))
    fonts = Fonts()
    frames = participant_frames(len(PARTICIPANTS) + 1)
    for name in SAMPLES:
        render_sample(name, display, fonts, frames)
        print(display.save_png(args.directory / f"{name}.png"))
    display.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
