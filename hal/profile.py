"""Hardware profiles: which backend and device each kind of device uses on a box model.

Profiles are TOML. The packaged ones live in ``hal/profiles``; custom ones are found in the
directories of ``$ROOMBOX_PROFILE_PATH`` (colon-separated), ``~/.config/roombox/profiles``
and ``/etc/roombox/profiles``, or given as a path to a ``.toml`` file. A profile may start
from another with ``extends = "name"`` and override only what differs.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hal.errors import ProfileError
from hal.schema import bounded, choices, parse

SAMPLE_RATES = (16000, 32000, 44100, 48000)
PIN_FACTORIES = ("mock", "lgpio", "rpigpio", "pigpio", "native")
# BCM numbers of the 40-pin header's GPIOs on every Raspberry Pi since the B+.
HEADER_GPIOS = range(0, 28)


@dataclass(frozen=True)
class CameraProfile:
    backend: str = choices("sim", "v4l2", "picamera2", "auto", default="sim")
    device: str = ""                      # v4l2: /dev/videoN; picamera2: camera index
    width: int = bounded(1280, 160, 3840)
    height: int = bounded(720, 120, 2160)
    fps: int = bounded(30, 1, 60)
    format: str = choices("auto", "raw", "mjpeg", "h264", default="auto")  # v4l2 input
    source: str = "pattern"               # sim: "pattern" or a video file's path

    def __post_init__(self):
        if self.width % 2 or self.height % 2:
            raise ValueError(f"camera size must be even for 4:2:0 video, got {self.width}x{self.height}")


@dataclass(frozen=True)
class MicrophoneProfile:
    backend: str = choices("sim", "alsa", "auto", default="sim")
    device: str = ""                      # alsa: e.g. "hw:CARD=seeed4micvoicec"
    sample_rate: int = 48000
    channels: int = bounded(1, 1, 16)
    period_ms: int = bounded(10, 5, 100)
    # Mic positions in metres relative to the array centre, one per channel: x right,
    # y away from the camera's view direction, z up.
    geometry: tuple[tuple[float, float, float], ...] = ()
    source: str = "speech"                # sim: "speech", "tone", "silence" or a WAV path

    def __post_init__(self):
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"microphone.sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate}")
        if self.geometry and len(self.geometry) != self.channels:
            raise ValueError(f"microphone.geometry has {len(self.geometry)} positions for "
                             f"{self.channels} channels; expected one per channel")


@dataclass(frozen=True)
class SpeakerProfile:
    backend: str = choices("sim", "alsa", "auto", default="sim")
    device: str = ""
    sample_rate: int = 48000
    channels: int = bounded(2, 1, 8)
    period_ms: int = bounded(10, 5, 100)
    sink: str = ""                        # sim: WAV file to write what is played ("" = none)

    def __post_init__(self):
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"speaker.sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate}")


@dataclass(frozen=True)
class ButtonPin:
    pin: int | str
    pull_up: bool = True                  # buttons short the pin to ground when pressed
    bounce_ms: int = bounded(30, 0, 1000)
    hold_s: float = bounded(5.0, 0.5, 30.0)


@dataclass(frozen=True)
class ButtonsProfile:
    pin_factory: str = choices(*PIN_FACTORIES, default="mock")
    join: ButtonPin | None = None
    mute: ButtonPin | None = None
    volume_up: ButtonPin | None = None
    volume_down: ButtonPin | None = None

    def named(self) -> dict[str, ButtonPin]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), ButtonPin)}


@dataclass(frozen=True)
class RgbPins:
    red: int | str
    green: int | str
    blue: int | str


@dataclass(frozen=True)
class LedPin:
    pin: int | str


@dataclass(frozen=True)
class LedsProfile:
    pin_factory: str = choices(*PIN_FACTORIES, default="mock")
    active_high: bool = True
    status: RgbPins | LedPin | None = None
    mute: LedPin | None = None


@dataclass(frozen=True)
class BoardProfile:
    backend: str = choices("sim", "raspberrypi", "generic", "auto", default="auto")


@dataclass(frozen=True)
class DisplayProfile:
    # No "auto": a box must not silently show its room screen in a desktop window.
    backend: str = choices("offscreen", "window", "kms", default="offscreen")
    # 0 x 0 = the display's current mode (kms), 1920 x 1080 elsewhere.
    width: int = bounded(0, 0, 7680)
    height: int = bounded(0, 0, 4320)
    fps: int = bounded(30, 1, 60)         # in-call redraw rate; idle screens redraw each second

    def __post_init__(self):
        if (self.width == 0) != (self.height == 0):
            raise ValueError(f"display size needs both width and height (or neither), got {self.width}x{self.height}")


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    description: str = ""
    camera: CameraProfile = field(default_factory=CameraProfile)
    microphone: MicrophoneProfile = field(default_factory=MicrophoneProfile)
    speaker: SpeakerProfile = field(default_factory=SpeakerProfile)
    buttons: ButtonsProfile = field(default_factory=ButtonsProfile)
    leds: LedsProfile = field(default_factory=LedsProfile)
    board: BoardProfile = field(default_factory=BoardProfile)
    display: DisplayProfile = field(default_factory=DisplayProfile)
    source: str = ""                      # where it was loaded from (set by the loader)


REQUIRED_SECTIONS = ("camera", "microphone", "speaker", "buttons", "leds", "board")


def search_dirs() -> list[Path]:
    """Directories searched for custom profiles, most specific first."""
    dirs = [Path(p) for p in os.environ.get("ROOMBOX_PROFILE_PATH", "").split(":") if p]
    dirs.append(Path.home() / ".config" / "roombox" / "profiles")
    dirs.append(Path("/etc/roombox/profiles"))
    return dirs


def available() -> dict[str, str]:
    """Every profile name found, mapped to where it comes from; custom ones shadow packaged."""
    found = {}
    for entry in resources.files("hal.profiles").iterdir():
        if entry.name.endswith(".toml"):
            found[entry.name[:-5]] = f"packaged:{entry.name}"
    for directory in reversed(search_dirs()):
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                found[path.stem] = str(path)
    return dict(sorted(found.items()))


def load_profile(name_or_path: str) -> HardwareProfile:
    """Load, merge (``extends``) and validate a profile by name or path.

    Raises ProfileError naming the key, the value and what was expected.
    """
    data, source = _load_raw(name_or_path, seen=())
    missing = [s for s in REQUIRED_SECTIONS if s not in data]
    if missing:
        raise ProfileError(f"profile {name_or_path!r} ({source}): section [{missing[0]}] is missing; "
                           f"a profile names a device for each of {', '.join(REQUIRED_SECTIONS)}")
    data.setdefault("name", Path(source).stem if not source.startswith("packaged:") else name_or_path)
    data["source"] = source
    profile = parse(HardwareProfile, data, "")
    _check_devices(profile)
    _check_pins(profile)
    return profile


def _load_raw(name_or_path: str, seen: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    if name_or_path in seen:
        raise ProfileError(f"extends: profile {name_or_path!r} extends itself through {' -> '.join(seen)}")
    text, source = _read(name_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {name_or_path!r} ({source}): not valid TOML ({exc})") from None
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, source
    if not isinstance(base_name, str):
        raise ProfileError(f"extends must be a profile name, got {base_name!r}")
    base, _ = _load_raw(base_name, seen + (name_or_path,))
    base.pop("name", None)
    base.pop("description", None)
    return _merge(base, data), source


def _read(name_or_path: str) -> tuple[str, str]:
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        path = Path(name_or_path)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise ProfileError(f"profile file {str(path)!r} cannot be read ({exc.strerror})") from None
    for directory in search_dirs():
        path = directory / f"{name_or_path}.toml"
        if path.is_file():
            return path.read_text(encoding="utf-8"), str(path)
    packaged = resources.files("hal.profiles") / f"{name_or_path}.toml"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8"), f"packaged:{name_or_path}.toml"
    raise ProfileError(f"profile {name_or_path!r} not found; available: {', '.join(available())}")


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_devices(profile: HardwareProfile) -> None:
    for kind in ("camera", "microphone", "speaker"):
        section = getattr(profile, kind)
        if section.backend in ("v4l2", "alsa") and not section.device:
            raise ProfileError(f"{kind}.device is required for backend {section.backend!r} "
                               f"(e.g. {'/dev/video0' if kind == 'camera' else 'hw:CARD=Array'}), got ''")


def _check_pins(profile: HardwareProfile) -> None:
    used: dict[str, str] = {}
    pins = [(f"buttons.{n}.pin", b.pin, profile.buttons.pin_factory)
            for n, b in profile.buttons.named().items()]
    status = profile.leds.status
    if isinstance(status, RgbPins):
        pins += [(f"leds.status.{c}", getattr(status, c), profile.leds.pin_factory)
                 for c in ("red", "green", "blue")]
    elif isinstance(status, LedPin):
        pins.append(("leds.status.pin", status.pin, profile.leds.pin_factory))
    if profile.leds.mute is not None:
        pins.append(("leds.mute.pin", profile.leds.mute.pin, profile.leds.pin_factory))
    for key, pin, factory in pins:
        name = _normalise_pin(key, pin, factory)
        if name in used:
            raise ProfileError(f"{key} = {pin!r} is already used by {used[name]}; each pin serves one device")
        used[name] = key


def _normalise_pin(key: str, pin: int | str, factory: str) -> str:
    """Accepts BCM numbers (17), gpiozero names ("GPIO17", "BOARD11") and, for the mock
    factory, any name; returns a canonical name for duplicate checks."""
    if isinstance(pin, int):
        if factory != "mock" and pin not in HEADER_GPIOS:
            raise ProfileError(f"{key} must be a header GPIO between 0 and 27, got {pin}")
        if pin < 0:
            raise ProfileError(f"{key} must be a GPIO number >= 0, got {pin}")
        return f"GPIO{pin}"
    text = pin.strip().upper()
    if text.startswith("GPIO") and text[4:].isdigit():
        return _normalise_pin(key, int(text[4:]), factory)
    if text.startswith("BCM") and text[3:].isdigit():
        return _normalise_pin(key, int(text[3:]), factory)
    if text.startswith("BOARD") and text[5:].isdigit() and 1 <= int(text[5:]) <= 40:
        return text
    raise ProfileError(f"{key} must be a BCM number (e.g. 17) or a name like 'GPIO17' or 'BOARD11', got {pin!r}")
