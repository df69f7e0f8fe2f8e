"""Board readings: real procfs/sysfs here, Raspberry Pi detection refusing a non-Pi."""
from __future__ import annotations

import pytest

from hal.board import open_board, thermal_zone_temp_c
from hal.errors import DeviceUnavailable
from hal.profile import BoardProfile


def test_sim_board_reports_identity_and_this_machines_resources():
    with open_board(BoardProfile(backend="sim")) as board:
        info = board.info()
    assert info["model"] == "roombox simulated board"
    assert info["serial"].startswith("SIM") and len(info["serial"]) == 18
    assert info["uptime_s"] > 0
    assert 0 < info["memory"]["available_bytes"] <= info["memory"]["total_bytes"]
    assert 0 < info["disk"]["free_bytes"] <= info["disk"]["total_bytes"]
    assert info["throttling"] == {"under_voltage": False, "throttled": False}


def test_serial_is_stable_and_overridable(monkeypatch):
    first = open_board(BoardProfile(backend="generic")).info()["serial"]
    assert open_board(BoardProfile(backend="generic")).info()["serial"] == first
    monkeypatch.setenv("ROOMBOX_SIM_SERIAL", "RB-TEST-0001")
    assert open_board(BoardProfile(backend="sim")).info()["serial"] == "RB-TEST-0001"


def test_raspberrypi_backend_refuses_another_machine():
    with pytest.raises(DeviceUnavailable, match=r"board: not a Raspberry Pi \(/proc/device-tree/model"):
        open_board(BoardProfile(backend="raspberrypi"))


def test_auto_falls_back_to_generic_off_a_pi():
    with open_board(BoardProfile(backend="auto")) as board:
        assert board.backend == "generic"


def test_thermal_zone_prefers_the_cpu_zone(tmp_path):
    for index, (kind, milli) in enumerate((("acpitz", "27800"), ("x86_pkg_temp", "51250"))):
        zone = tmp_path / f"thermal_zone{index}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert thermal_zone_temp_c(tmp_path) == 51.2
