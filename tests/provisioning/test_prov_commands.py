"""Signed commands: run once by id, refused when replayed, expired or for another box."""
from __future__ import annotations


import pytest


@pytest.fixture
async def enrolled(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{"serial": "RB-K1"}]})
    box = make_box("RB-K1", clock=service.clock)
    await box.agent.enrol()
    await box.agent.checkin()
    box.drain()
    return box


async def _issue(service, kind: str, ttl_s: int = 900) -> str:
    resp = await service.admin("POST", "/v1/admin/devices/RB-K1/commands",
                               {"kind": kind, "ttl_s": ttl_s})
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


async def _pending_tokens(service, box) -> list[str]:
    ident = box.agent.identity
    resp = await service.device("POST", "/v1/device/checkin", {"health": {}},
                                cert=(ident.cert_path, ident.key_path))
    return resp.json()["commands"]


async def test_command_runs_once_and_its_result_reaches_the_service(service, enrolled):
    command_id = await _issue(service, "identify")
    await enrolled.agent.checkin()
    event = await enrolled.next_event("command_received")
    assert event.data == {"id": command_id, "kind": "identify", "args": {}}
    enrolled.agent.report_result(command_id, "done", "status LED blinking white for 30 s")
    await enrolled.agent.checkin()      # reports the result
    listed = (await service.admin("GET", "/v1/admin/devices/RB-K1/commands")).json()
    assert listed["commands"][0]["status"] == "done"
    assert listed["commands"][0]["result"] == "status LED blinking white for 30 s"
    assert "command_received" not in enrolled.drain()


async def test_replayed_command_is_refused(service, enrolled):
    await _issue(service, "identify")
    token = (await _pending_tokens(service, enrolled))[0]
    await enrolled.agent.handle_command(token)
    assert (await enrolled.next_event()).kind == "command_received"
    await enrolled.agent.handle_command(token)
    refused = await enrolled.next_event()
    assert refused.kind == "command_refused" and "replay" in refused.data["reason"]


async def test_expired_command_is_refused(service, enrolled):
    await _issue(service, "collect_diagnostics", ttl_s=10)
    token = (await _pending_tokens(service, enrolled))[0]
    service.clock.offset = 60     # the box's clock is the same test clock
    await enrolled.agent.handle_command(token)
    refused = await enrolled.next_event()
    assert refused.kind == "command_refused" and "expired" in refused.data["reason"]
    # The service stops offering it too.
    assert await _pending_tokens(service, enrolled) == []


async def test_disruptive_command_waits_until_the_call_ends(service, enrolled):
    command_id = await _issue(service, "reboot")
    enrolled.in_call = True
    await enrolled.agent.checkin()
    await enrolled.agent.checkin()
    assert "command_received" not in enrolled.drain()
    enrolled.in_call = False
    await enrolled.agent.checkin()
    event = await enrolled.next_event("command_received")
    assert event.data["id"] == command_id and event.data["kind"] == "reboot"


async def test_command_signed_for_another_box_is_refused(service, enrolled, make_box):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{"serial": "RB-K2"}]})
    other = make_box("RB-K2")
    await other.agent.enrol()
    resp = await service.admin("POST", "/v1/admin/devices/RB-K2/commands", {"kind": "identify"})
    assert resp.status_code == 200
    ident = other.agent.identity
    token = (await service.device("POST", "/v1/device/checkin", {"health": {}},
                                  cert=(ident.cert_path, ident.key_path))).json()["commands"][0]
    await enrolled.agent.handle_command(token)
    refused = await enrolled.next_event()
    assert refused.kind == "command_refused" and "is for 'RB-K2'" in refused.data["reason"]


async def test_unknown_command_kind_is_refused_by_the_service(service, enrolled):
    resp = await service.admin("POST", "/v1/admin/devices/RB-K1/commands", {"kind": "format_disk"})
    assert resp.status_code == 422 and "format_disk" in resp.json()["detail"]


async def test_technician_access_carries_only_the_code_hash(service, enrolled):
    from provisioning.schema import technician_code_digest
    digest = technician_code_digest("ABCDE-FGH23")
    resp = await service.admin("POST", "/v1/admin/devices/RB-K1/commands", {
        "kind": "technician_access", "args": {"code_sha256": digest, "valid_s": 1800}})
    assert resp.status_code == 200
    await enrolled.agent.checkin()
    event = await enrolled.next_event("command_received")
    assert event.data["kind"] == "technician_access"
    assert event.data["args"] == {"code_sha256": digest, "valid_s": 1800}


@pytest.mark.parametrize("kind, args, match", [
    ("technician_access", {"code_sha256": "ABC", "valid_s": 60},
     "args.code_sha256 must be 64 lowercase hex digits, got 'ABC'"),
    ("technician_access", {"code_sha256": "a" * 64, "valid_s": 99999},
     "args.valid_s must be an integer from 1 to 28800, got 99999"),
    ("reboot", {"force": True}, "args.force must be one of nothing for reboot"),
])
async def test_command_arguments_are_checked_by_the_service(service, enrolled, kind, args,
                                                            match):
    resp = await service.admin("POST", "/v1/admin/devices/RB-K1/commands",
                               {"kind": kind, "args": args})
    assert resp.status_code == 422
    assert match in resp.json()["detail"]


def test_command_with_a_bad_signature_or_unknown_kind_is_refused(tmp_path):
    import time as _time

    from provisioning import crypto
    from provisioning.agent.commands import CommandGate
    from provisioning.errors import CommandRejected
    from provisioning.schema import COMMAND_TYP
    ours, theirs = (crypto.key_pem(crypto.new_signing_key()) for _ in range(2))
    gate = CommandGate(tmp_path, "RB-K9", crypto.public_pem(crypto.load_key(ours)))
    now = int(_time.time())
    payload = {"jti": "c1", "sub": "RB-K9", "cmd": "identify", "iat": now, "exp": now + 60,
               "args": {}}
    with pytest.raises(CommandRejected, match="signature check failed"):
        gate.verify(crypto.sign_document(payload, theirs, COMMAND_TYP))
    with pytest.raises(CommandRejected, match="cmd must be one of reboot"):
        gate.verify(crypto.sign_document(payload | {"cmd": "format_disk"}, ours, COMMAND_TYP))
    with pytest.raises(CommandRejected, match="JWS typ must be 'roombox-command\\+jws'"):
        gate.verify(crypto.sign_document(payload, ours, "roombox-config+jws"))
    assert gate.verify(crypto.sign_document(payload, ours, COMMAND_TYP)).kind == "identify"
