"""Hardware profiles: packaged ones load; every kind of mistake names key, value, expectation."""
from __future__ import annotations

import textwrap

import pytest

from hal.errors import ProfileError
from hal.profile import LedPin, RgbPins, available, load_profile

PACKAGED = ("sim", "pi4-respeaker4", "pi5-usb")


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_profile_loads_with_every_device(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.buttons.join is not None and profile.buttons.mute is not None
    assert isinstance(profile.leds.status, RgbPins) and isinstance(profile.leds.mute, LedPin)
    assert len(profile.microphone.geometry) == profile.microphone.channels


def test_available_lists_packaged_and_custom(tmp_path, monkeypatch):
    (tmp_path / "lab.toml").write_text('extends = "sim"\ndescription = "lab box"\n')
    monkeypatch.setenv("ROOMBOX_PROFILE_PATH", str(tmp_path))
    found = available()
    assert set(PACKAGED) <= set(found)
    assert found["lab"] == str(tmp_path / "lab.toml")


def test_custom_profile_extends_and_overrides(tmp_path, monkeypatch):
    (tmp_path / "room7.toml").write_text(textwrap.dedent('''
        extends = "pi5-usb"
        description = "Room 7"
        [microphone]
        device = "hw:CARD=UMA8"
        channels = 2
        geometry = [[0.05, 0, 0], [-0.05, 0, 0]]
    '''))
    monkeypatch.setenv("ROOMBOX_PROFILE_PATH", str(tmp_path))
    profile = load_profile("room7")
    assert profile.name == "room7" and profile.description == "Room 7"
    assert profile.microphone.device == "hw:CARD=UMA8" and profile.microphone.channels == 2
    assert profile.microphone.sample_rate == 16000          # inherited
    assert profile.camera.device == "/dev/video0"           # inherited section


def write_sim_variant(tmp_path, section: str, body: str):
    path = tmp_path / "broken.toml"
    path.write_text(f'extends = "sim"\n[{section}]\n{textwrap.dedent(body)}\n')
    return str(path)


@pytest.mark.parametrize("section, body, message", [
    ("camera", 'resolution = "720p"', "camera.resolution: unknown key (allowed: backend, device, format, fps, height, source, width)"),
    ("camera", 'backend = "usb"', "camera.backend must be one of 'sim', 'v4l2', 'picamera2', 'auto', got 'usb'"),
    ("camera", "fps = 120", "camera.fps must be between 1 and 60, got 120"),
    ("camera", 'fps = "30"', "camera.fps must be an integer, got '30'"),
    ("camera", 'backend = "v4l2"', "camera.device is required for backend 'v4l2' (e.g. /dev/video0), got ''"),
    ("microphone", "sample_rate = 44000", "microphone.sample_rate must be one of (16000, 32000, 44100, 48000), got 44000"),
    ("microphone", "channels = 2", "microphone.geometry has 4 positions for 2 channels"),
    ("buttons", "join = { pin = 40 }\npin_factory = \"lgpio\"\nmute = { pin = 27 }",
     "buttons.join.pin must be a header GPIO between 0 and 27, got 40"),
    ("buttons", 'join = { pin = "GPIO-17" }', "buttons.join.pin must be a BCM number (e.g. 17) or a name like 'GPIO17' or 'BOARD11', got 'GPIO-17'"),
    ("buttons", "join = { pin = 27 }", "buttons.mute.pin = 27 is already used by buttons.join.pin"),
    ("buttons", "join = { pn = 17 }", "buttons.join.pn: unknown key (allowed: bounce_ms, hold_s, pin, pull_up)"),
    ("leds", "status = 5", "leds.status must be a table or a table or empty, got 5"),
    ("leds", "mute = { pin = 26, colour = 'red' }", "leds.mute.colour: unknown key (allowed: pin)"),
])
def test_broken_profile_names_key_value_and_expectation(tmp_path, section, body, message):
    with pytest.raises(ProfileError) as caught:
        load_profile(write_sim_variant(tmp_path, section, body))
    assert message in str(caught.value)


def test_missing_section_is_named(tmp_path):
    path = tmp_path / "nocam.toml"
    path.write_text('[microphone]\n[speaker]\n[buttons]\n[leds]\n[board]\n')
    with pytest.raises(ProfileError, match=r"section \[camera\] is missing"):
        load_profile(str(path))


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ProfileError, match="profile 'pi9' not found; available: .*sim"):
        load_profile("pi9")


def test_invalid_toml_says_where(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[camera\nbackend = 'sim'\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(path))


def test_extends_cycle_is_reported(tmp_path, monkeypatch):
    (tmp_path / "a.toml").write_text('extends = "b"\n')
    (tmp_path / "b.toml").write_text('extends = "a"\n')
    monkeypatch.setenv("ROOMBOX_PROFILE_PATH", str(tmp_path))
    with pytest.raises(ProfileError, match="extends itself"):
        load_profile("a")
