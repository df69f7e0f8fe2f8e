"""The roombox command as a user runs it: exit codes, JSON and messages."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOMBOX = [sys.executable, "-m", "terminal.cli"]


def roombox(*args, timeout=60):
    return subprocess.run([*ROOMBOX, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


def test_version():
    result = roombox("--version")
    assert result.returncode == 0 and result.stdout.startswith("roombox ")


def test_hw_list_shows_every_packaged_profile_and_its_devices():
    result = roombox("hw", "list", "--json")
    assert result.returncode == 0, result.stderr
    profiles = json.loads(result.stdout)["profiles"]
    assert {"sim", "pi4-respeaker4", "pi5-usb"} <= set(profiles)
    assert profiles["pi5-usb"]["devices"]["camera"] == "v4l2: /dev/video0 1280x720@30"
    assert profiles["pi4-respeaker4"]["devices"]["microphone"] == "alsa: hw:CARD=seeed4micvoicec 4 ch @ 16000 Hz"


def test_selftest_sim_passes_every_device_with_measured_figures():
    result = roombox("selftest", "--profile", "sim", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    devices = {d["device"]: d for d in report["devices"]}
    assert report["ok"] is True
    assert set(devices) == {"camera", "microphone", "speaker", "buttons", "leds", "board"}
    assert all(d["ok"] for d in devices.values())
    assert 25 <= devices["camera"]["fps"] <= 35 and devices["camera"]["mean_change"] > 0
    assert len(devices["microphone"]["level_dbfs"]) == 4
    assert all(-40 < level < -10 for level in devices["microphone"]["level_dbfs"])
    assert devices["microphone"]["dead_channels"] == []
    assert devices["speaker"]["played_s"] == 0.5
    assert devices["buttons"]["press_test"] == {"join": True, "mute": True, "volume_up": True, "volume_down": True}


def test_selftest_table_names_every_device():
    result = roombox("selftest")
    assert result.returncode == 0
    for device in ("camera", "microphone", "speaker", "buttons", "leds", "board"):
        assert device in result.stdout


def test_selftest_on_absent_hardware_fails_with_a_reason_per_device():
    result = roombox("selftest", "--profile", "pi5-usb", "--json")
    assert result.returncode == 1
    reasons = {d["device"]: d["reason"] for d in json.loads(result.stdout)["devices"]}
    assert reasons["camera"].startswith("v4l2: no camera at '/dev/video0'")
    assert reasons["microphone"] == "alsa: cannot open capture 'hw:CARD=Array' at 16000 Hz, 4 ch (No such device)"
    assert reasons["buttons"].startswith("gpio: pin factory 'lgpio'")


def test_broken_profile_stops_with_the_key_and_value(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('extends = "sim"\n[camera]\nfsp = 30\n')
    result = roombox("selftest", "--profile", str(path))
    assert result.returncode == 2
    assert "camera.fsp: unknown key (allowed: backend, device, format, fps, height, source, width)" in result.stderr


def test_run_reaches_idle_and_stops_after_its_duration():
    result = roombox("run", "--profile", "sim", "--duration", "1.5", "--provisioning", "off",
                     "--metrics", "off")
    assert result.returncode == 0, result.stderr
    assert "terminal: booting -> idle (ready)" in result.stderr


def test_run_without_a_meeting_waits_unprovisioned_and_says_why(tmp_path):
    result = roombox("run", "--profile", "sim", "--duration", "2", "--metrics", "off",
                     "--state-dir", str(tmp_path / "state"), "--seed-dir", str(tmp_path / "no-seed"))
    assert result.returncode == 0, result.stderr
    assert "terminal: booting -> unprovisioned (looking for the provisioning service)" in result.stderr
    assert ("unprovisioned -> unprovisioned (no provisioning service: no provisioning.toml seed"
            in result.stderr), "the reason names what is missing"
    key = tmp_path / "state" / "device.key"
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600, "the identity is made on first boot, private"


@pytest.mark.timeout(90)
def test_demo_runs_the_story_and_exits_zero():
    result = roombox("demo", timeout=80)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   mute pressed: mute LED lights" in result.stdout
    assert "FAIL" not in result.stdout
