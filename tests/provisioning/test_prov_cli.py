"""``roombox server`` and ``roombox admin`` as an operator runs them."""
from __future__ import annotations

import argparse
import socket
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from provisioning import cli

ROOMBOX = [sys.executable, "-c", "import sys; from terminal.cli import main; sys.exit(main())"]
START_TIMEOUT_S = 20


def run_cli(*argv: str) -> int:
    """Parse with the provisioning command groups only and run, as ``roombox`` would."""
    parser = argparse.ArgumentParser(prog="roombox")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def running_service(tmp_path_factory):
    data = tmp_path_factory.mktemp("svc") / "data"
    init = subprocess.run(ROOMBOX + ["server", "init", "--data", str(data)],
                          capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert init.returncode == 0, init.stderr
    token = init.stdout.split("admin token (shown once, stored only as a hash): ")[1].split()[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(ROOMBOX + ["server", "run", "--data", str(data), "--listen",
                                       f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    ctx = ssl.create_default_context(cafile=str(data / "ca.pem"))
    while True:
        try:
            httpx.get(url + "/v1/ca.pem", verify=ctx, timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "server run did not come up"
            time.sleep(0.1)
    token_file = data.parent / "token"
    token_file.write_text(token)
    try:
        yield {"data": data, "url": url, "token_file": token_file, "init_out": init.stdout}
    finally:
        proc.terminate()
        proc.wait(START_TIMEOUT_S)


def admin(svc, *argv: str) -> int:
    return run_cli("admin", argv[0], "--url", svc["url"], "--data", str(svc["data"]),
                   "--token-file", str(svc["token_file"]), *argv[1:])


def test_init_makes_secrets_owner_only_and_prints_the_pin(running_service):
    data = running_service["data"]
    for secret in ("ca.key", "tls.key", "config-signing.key", "admin-token.sha256"):
        assert (data / secret).stat().st_mode & 0o777 == 0o600, secret
    assert (data.stat().st_mode & 0o777) == 0o700
    token = running_service["token_file"].read_text()
    assert token not in "".join(p.read_text(errors="replace") for p in data.iterdir()
                                if p.is_file())
    from provisioning import crypto
    assert crypto.fingerprint((data / "ca.pem").read_bytes()) in running_service["init_out"]


def test_init_refuses_to_replace_an_existing_ca(running_service, capsys):
    assert run_cli("server", "init", "--data", str(running_service["data"])) == 1
    assert "refusing to replace it" in capsys.readouterr().err


def test_admin_imports_csv_and_lists_devices(running_service, tmp_path, capsys):
    sheet = tmp_path / "rooms.csv"
    sheet.write_text("serial,site,room,meeting_url,calendar_url,hardware_profile\n"
                     "RB-100,HQ,Ada,whip+https://meet.example.org/ada,,pi5-array\n"
                     "RB-101,HQ,Babbage,whip+https://meet.example.org/babbage,,pi5-array\n")
    assert admin(running_service, "import", str(sheet)) == 0
    assert "added 2" in capsys.readouterr().out
    assert admin(running_service, "devices") == 0
    out = capsys.readouterr().out
    assert "RB-100" in out and "HQ/Babbage" in out and "preregistered" in out
    assert admin(running_service, "audit") == 0
    assert "devices.import" in capsys.readouterr().out


def test_admin_import_names_a_bad_column(running_service, tmp_path, capsys):
    sheet = tmp_path / "bad.csv"
    sheet.write_text("serial,floor\nRB-1,3\n")
    assert admin(running_service, "import", str(sheet)) == 1
    assert "column 'floor' must be one of serial, site, room" in capsys.readouterr().err


def test_admin_with_wrong_token_fails_clearly(running_service, tmp_path, capsys):
    bad = tmp_path / "token"
    bad.write_text("wrong")
    code = run_cli("admin", "devices", "--url", running_service["url"], "--data",
                   str(running_service["data"]), "--token-file", str(bad))
    assert code == 1
    assert "HTTP 401" in capsys.readouterr().err


def test_admin_approve_unknown_code_fails_clearly(running_service, capsys):
    assert admin(running_service, "approve", "ACDE-FGHJ", "--room", "Ada") == 1
    assert "no pending activation code ACDE-FGHJ" in capsys.readouterr().err


def test_server_run_rejects_a_bad_listen_address(running_service, capsys):
    assert run_cli("server", "run", "--data", str(running_service["data"]),
                   "--listen", "everywhere") == 1
    assert "--listen must be HOST:PORT" in capsys.readouterr().err


def test_admin_remove_unknown_box_fails_clearly(running_service, capsys):
    assert admin(running_service, "remove", "RB-NOPE") == 1
    assert "no device 'RB-NOPE'" in capsys.readouterr().err
