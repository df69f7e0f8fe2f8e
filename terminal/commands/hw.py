"""``roombox hw list``: the hardware profiles and what each device resolves to."""
from __future__ import annotations

import argparse
import json

from hal.errors import ProfileError
from hal.profile import HardwareProfile, RgbPins, available, load_profile
from hal.registry import candidates


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hw", help="hardware profiles", description=__doc__)
    sub = parser.add_subparsers(dest="hw_command", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="list profiles and what each device resolves to")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=list_profiles)


def resolve(profile: HardwareProfile) -> dict[str, str]:
    """One line per device kind: backend(s) to be tried (with environment overrides) and device."""
    lines = {}
    for kind in ("camera", "microphone", "speaker"):
        section = getattr(profile, kind)
        detail = section.device or getattr(section, "source", "") or ""
        if kind == "camera":
            detail = f"{detail} {section.width}x{section.height}@{section.fps}".strip()
        elif kind == "microphone":
            detail = f"{detail} {section.channels} ch @ {section.sample_rate} Hz".strip()
        else:
            detail = f"{detail} {section.channels} ch @ {section.sample_rate} Hz".strip()
        lines[kind] = f"{' -> '.join(candidates(kind, section.backend))}: {detail}"
    buttons = profile.buttons.named()
    lines["buttons"] = f"{profile.buttons.pin_factory}: " + ", ".join(f"{n}=GPIO{b.pin}" if isinstance(b.pin, int)
                                                                     else f"{n}={b.pin}" for n, b in buttons.items())
    status = profile.leds.status
    leds = []
    if isinstance(status, RgbPins):
        leds.append(f"status=RGB({status.red},{status.green},{status.blue})")
    elif status is not None:
        leds.append(f"status={status.pin}")
    if profile.leds.mute is not None:
        leds.append(f"mute={profile.leds.mute.pin}")
    lines["leds"] = f"{profile.leds.pin_factory}: " + ", ".join(leds)
    lines["board"] = " -> ".join(candidates("board", profile.board.backend))
    return lines


def list_profiles(args: argparse.Namespace) -> int:
    rows, errors = {}, {}
    for name, source in available().items():
        try:
            profile = load_profile(name)
            rows[name] = {"source": source, "description": profile.description, "devices": resolve(profile)}
        except ProfileError as exc:
            errors[name] = str(exc)
    if args.json:
        print(json.dumps({"profiles": rows, "errors": errors}, indent=2))
    else:
        for name, row in rows.items():
            print(f"{name}  ({row['source']})\n  {row['description']}")
            for kind, text in row["devices"].items():
                print(f"    {kind:<11} {text}")
        for name, error in errors.items():
            print(f"{name}  BROKEN: {error}")
    return 1 if errors else 0
