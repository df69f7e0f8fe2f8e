"""Technician health: findings with causes and fixes, the speaker loop on the simulated room,
and a device pulled while the terminal runs."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from hal.profile import load_profile
from terminal.app import Terminal
from terminal.health import board, configuration, endpoint, speaker_loop, stun_endpoint
from terminal.monitor import DeviceMonitor, presence
from terminal.state import State


def roombox(*args, env=None, timeout=90):
    return subprocess.run([sys.executable, "-m", "terminal.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_health_on_sim_checks_every_section_and_passes(tmp_path):
    result = roombox("health", "--profile", "sim", "--json", env={"ROOMBOX_CONTROL_SOCKET": str(tmp_path / "none.sock")})
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"], result.stdout
    checks = {(f["section"], f["check"]): f for f in report["findings"]}
    for device in ("camera", "microphone", "speaker", "buttons", "leds", "board", "speaker loop"):
        assert checks[("peripherals", device)]["status"] == "ok", device
    assert {"temperature", "memory", "disk", "clock"} <= {c for s, c in checks if s == "board"}
    assert checks[("software", "terminal")]["detail"] == "not running"


def test_unreachable_service_fails_health_with_a_fix(tmp_path):
    result = roombox("health", "--json", "--meeting", "janus+http://127.0.0.1:9/janus?room=1",
                     env={"ROOMBOX_CONTROL_SOCKET": str(tmp_path / "none.sock")})
    assert result.returncode == 1
    finding = next(f for f in json.loads(result.stdout)["findings"] if f["section"] == "network")
    assert finding["status"] == "fail" and finding["detail"].startswith("127.0.0.1:9 unreachable")
    assert "firewall" in finding["fix"]


def test_absent_hardware_gives_each_device_a_fix(tmp_path):
    result = roombox("health", "--profile", "pi5-usb", "--json", env={"ROOMBOX_CONTROL_SOCKET": str(tmp_path / "x")})
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"] if f["section"] == "peripherals"}
    assert result.returncode == 1
    assert findings["camera"]["status"] == "fail" and "cable" in findings["camera"]["fix"]
    assert "arecord -L" in findings["microphone"]["fix"]
    assert findings["speaker loop"]["status"] == "skip"


async def test_speaker_loop_hears_the_chirp_through_the_simulated_room():
    finding = await speaker_loop(load_profile("sim"))
    assert finding.status == "ok"
    # hal.sim_room: 12 ms acoustic delay, -12 dB; the reading adds a period of buffering.
    assert 8 <= finding.figures["delay_ms"] <= 40
    assert -16 <= finding.figures["echo_level_db"] <= -9


async def test_endpoint_measures_dns_and_connect_time():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        finding = await endpoint("conference", f"janus+http://localhost:{port}/janus")
    assert finding.status == "ok" and finding.figures["connect_ms"] < 1000
    missing = await endpoint("conference", "https://no-such-host.invalid/")
    assert missing.status == "fail" and "cannot resolve 'no-such-host.invalid'" in missing.detail


def test_board_findings_flag_throttling_and_heat():
    findings = board({"cpu_temp_c": 82.0, "throttling": {"under_voltage": True, "under_voltage_occurred": True},
                      "memory": {"available_bytes": 2**30, "total_bytes": 2**31},
                      "disk": {"free_bytes": 2**33, "total_bytes": 2**34}})
    by_check = {f.check: f for f in findings}
    assert by_check["power and throttling"].status == "fail"
    assert by_check["power and throttling"].detail == "under_voltage now"
    assert by_check["temperature"].status == "fail" and "power supply" in by_check["temperature"].fix


def test_presence_reads_kernel_device_lists(tmp_path):
    assert presence("camera", "v4l2", str(tmp_path / "video0")) == f"{tmp_path / 'video0'} is gone (unplugged?)"
    assert presence("microphone", "alsa", "hw:CARD=NoSuchArray") == "sound card 'NoSuchArray' is gone (unplugged?)"
    assert presence("microphone", "alsa", "rbcap:INFILE=/x") is None
    assert presence("camera", "sim", "", "pattern") is None


async def test_pulled_camera_degrades_the_terminal_and_plugging_it_back_recovers(tmp_path):
    device = tmp_path / "video0"
    device.touch()
    profile = load_profile("sim")
    profile = dataclasses.replace(profile, camera=dataclasses.replace(profile.camera, backend="v4l2", device=str(device)))
    terminal = Terminal(profile)
    monitor = DeviceMonitor(profile, terminal.post, interval_s=0.05)
    stop = asyncio.Event()

    async def until(state):
        async with asyncio.timeout(5):
            while terminal.machine.state != state:
                await asyncio.sleep(0.02)

    async with asyncio.TaskGroup() as group:
        group.create_task(terminal.run(stop))
        watcher = group.create_task(monitor.run())
        await until(State.IDLE)
        device.unlink()
        await until(State.DEGRADED)
        degraded = terminal.status()
        device.touch()
        await until(State.IDLE)
        stop.set()
        watcher.cancel()
    assert degraded["reason"] == f"camera: {device} is gone (unplugged?)"
    assert degraded["lost_devices"] == {"camera": f"{device} is gone (unplugged?)"}


@pytest.fixture
def turn_server(tmp_path):
    """A real TURN server (Debian coturn) on a loopback UDP port."""
    if not shutil.which("turnserver"):
        pytest.fail("turnserver not installed (Debian package coturn, see deps/apt.txt)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(["turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}",
                             "--no-cli", "--no-tls", "--no-dtls", "--lt-cred-mech", "--user=box:secret",
                             "--realm=roombox.test", f"--pidfile={tmp_path / 'turn.pid'}",
                             f"--log-file={tmp_path / 'turn.log'}", "--simple-log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_turn_server_answers_stun_over_udp_and_a_silent_port_fails_with_a_fix(turn_server):
    deadline = time.monotonic() + 10
    while True:                     # coturn takes a moment to bind
        finding = await stun_endpoint("TURN", f"turn:127.0.0.1:{turn_server}?transport=udp")
        if finding.status == "ok" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert finding.status == "ok", finding.detail
    assert 0 < finding.figures["rtt_ms"] < 1000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:   # bound, never answers
        silent.bind(("127.0.0.1", 0))
        dead = await stun_endpoint("TURN", f"turn:127.0.0.1:{silent.getsockname()[1]}")
    assert dead.status == "fail" and "no STUN answer" in dead.detail and "UDP" in dead.fix


def test_configuration_finding_names_the_version_and_the_last_rollback():
    running = {"state": "idle", "reason": "ready", "notices": ["call: ended (Janus gone)"],
               "provisioning": {"config_version": 3, "problem": None,
                                "last_rollback": {"version": 4, "reason": "conferencing service unreachable"}}}
    config, errors = configuration(running)
    assert config.status == "warn" and config.figures["config_version"] == 3
    assert "version 4 was rolled back: conferencing service unreachable" in config.detail
    assert errors.status == "warn" and "call: ended (Janus gone)" in errors.detail
    local, none = configuration({"state": "idle", "notices": []})
    assert local.status == "ok" and local.detail.startswith("local") and none.detail == "none"


async def test_press_test_counts_presses_on_the_running_terminal_without_joining_or_muting(tmp_path):
    from terminal.app import MeetingSettings
    from terminal.health import press_test_running
    from tests.terminal.conftest import running_terminal
    path = str(tmp_path / "control.sock")
    said: list[str] = []
    async with running_terminal(MeetingSettings(control_path=path,
                                                meeting_url="janus+http://127.0.0.1:9/janus?room=1")) as terminal:
        while terminal.control is None or not terminal.control.ready.is_set():
            await asyncio.sleep(0.01)

        async def technician(names):
            while not said:                         # the prompt came: press
                await asyncio.sleep(0.01)
            for name in names:
                pin = terminal.buttons.device(name).pin
                pin.drive_low()
                pin.drive_high()

        async with asyncio.TaskGroup() as group:
            group.create_task(technician(terminal.buttons.names))
            finding = await press_test_running(path, 5, said.append)
        assert finding.status == "ok", finding
        assert set(finding.figures["press_test"]) == {"join", "mute", "volume_up", "volume_down"}
        assert "Press each button once now: join, mute, volume_up, volume_down" in said[0]
        assert terminal.machine.state == State.IDLE and not terminal.machine.is_muted, \
            "presses during the test neither join nor mute"

        said.clear()
        async with asyncio.TaskGroup() as group:
            group.create_task(technician(["join", "volume_up", "volume_down"]))
            finding = await press_test_running(path, 1.5, said.append)
        assert finding.status == "fail" and finding.detail == "no press from mute within 2 s"
        assert "wiring" in finding.fix


def test_press_test_without_a_terminal_presses_mock_buttons(tmp_path):
    result = roombox("health", "--profile", "sim", "--json", "--press-test", "5",
                     env={"ROOMBOX_CONTROL_SOCKET": str(tmp_path / "none.sock")})
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["button press test"]["status"] == "ok", findings["button press test"]
