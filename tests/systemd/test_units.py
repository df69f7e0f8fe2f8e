"""The unit files, sysusers and tmpfiles data, checked by systemd's own tools offline."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
EXPOSURE_LIMITS = {"roombox.service": 3.0, "roombox-provisioning.service": 2.0}

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed (Debian package systemd)")


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """install.sh staged into a temporary root, its ExecStart pointing at this venv's roombox."""
    dest = tmp_path_factory.mktemp("root")
    (dest / "etc").mkdir()
    prefix = dest / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "roombox").symlink_to(Path(shutil.which("roombox") or ROOT / ".venv/bin/roombox"))
    result = subprocess.run(["bash", str(UNITS / "install.sh"), "--no-venv"], capture_output=True, text=True,
                            env={**os.environ, "DESTDIR": str(dest), "PREFIX": str(prefix),
                                 "ROOMBOX_PROFILE": "pi5-usb"}, timeout=60)
    assert result.returncode == 0, result.stderr
    return dest


def test_units_verify_clean(staged):
    units = [str(staged / "etc/systemd/system" / name) for name in EXPOSURE_LIMITS]
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit, limit", EXPOSURE_LIMITS.items())
def test_exposure_is_within_the_limit(staged, unit, limit):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                             str(staged / "etc/systemd/system" / unit)], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr
    assert float(found.group(1)) <= limit


def test_terminal_unit_is_notify_with_watchdog_and_restart_limits():
    text = (UNITS / "roombox.service").read_text()
    for line in ("Type=notify", "WatchdogSec=20", "Restart=on-failure", "StartLimitBurst=5",
                 "DevicePolicy=closed", "DeviceAllow=char-video4linux rw", "User=roombox",
                 "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes"):
        assert line in text.splitlines(), line


def test_staged_install_creates_user_groups_dirs_and_env(staged):
    passwd = (staged / "etc/passwd").read_text()
    group = (staged / "etc/group").read_text()
    assert re.search(r"^roombox:x:\d+:\d+:.*:/var/lib/roombox:/usr/sbin/nologin$", passwd, re.M)
    for name in ("video", "audio", "gpio"):
        assert re.search(rf"^{name}:x:\d+:.*\broombox\b", group, re.M), name
    state = (staged / "var/lib/roombox").stat()
    assert stat.S_IMODE(state.st_mode) == 0o700
    env = staged / "etc/roombox/roombox.env"
    assert "ROOMBOX_PROFILE=pi5-usb" in env.read_text() and stat.S_IMODE(env.stat().st_mode) == 0o640
    unit = (staged / "etc/systemd/system/roombox.service").read_text()
    assert f"ExecStart={staged}/prefix/bin/roombox run --profile ${{ROOMBOX_PROFILE}}" in unit
    rule = (staged / "etc/polkit-1/rules.d/50-roombox-reboot.rules").read_text()
    assert 'subject.user == "roombox"' in rule and '"org.freedesktop.login1.reboot"' in rule
