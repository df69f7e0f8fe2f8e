"""Every enrolment path end to end over real TLS on loopback, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import time

import pytest

from provisioning import protocol
from provisioning.agent.discovery import ServiceLocation
from provisioning.errors import DiscoveryError, EnrolmentError

ROOM = {"site": "HQ", "room": "Ada", "meeting_url": "whip+https://meet.example.org/ada",
        "calendar_url": "https://cal.example.org/ada.ics"}


async def test_preregistered_box_enrols_and_reaches_its_room_config(service, make_box):
    resp = await service.admin("POST", "/v1/admin/devices/import",
                               {"rows": [{"serial": "RB-A1", **ROOM}]})
    assert resp.status_code == 200 and resp.json()["added"] == 1
    box = make_box("RB-A1")
    started = time.monotonic()
    await box.agent.enrol()
    assert (await box.next_event()).kind == "enrolled"
    await box.agent.checkin()
    committed = await box.next_event("config_committed")
    elapsed = time.monotonic() - started
    assert committed.data["version"] == 1
    assert committed.data["settings"].meeting_url == ROOM["meeting_url"]
    assert committed.data["settings"].room == "Ada"
    assert box.agent.store.running.calendar_url == ROOM["calendar_url"]
    assert elapsed < 10, f"path A took {elapsed:.1f} s from reachable service to config"
    # The key stays private to the box.
    assert (box.agent.identity.key_path.stat().st_mode & 0o777) == 0o600
    await box.agent.checkin()    # the next check-in reports what now runs
    devices = (await service.admin("GET", "/v1/admin/devices")).json()["devices"]
    assert devices[0]["state"] == "accepted" and devices[0]["config_version"] == 1
    assert devices[0]["health"] == {"camera": "ok"}


async def test_device_endpoints_need_the_device_certificate(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{"serial": "RB-A2"}]})
    box = make_box("RB-A2")
    await box.agent.enrol()
    anonymous = await service.device("POST", protocol.CHECKIN_PATH, {"health": {}})
    assert anonymous.status_code == 401
    ident = box.agent.identity
    with_cert = await service.device("POST", protocol.CHECKIN_PATH, {"health": {}},
                                     cert=(ident.cert_path, ident.key_path))
    assert with_cert.status_code == 200
    assert with_cert.json()["desired_config_version"] == 1


async def test_activation_code_approved_by_admin_enrols_box_in_chosen_room(service, make_box):
    box = make_box("RB-B1")
    enrolling = asyncio.create_task(box.agent.enrol())
    try:
        shown = await box.next_event("activation_code")
        code = shown.data["user_code"]
        assert len(code) == 9 and code[4] == "-"
        assert shown.data["verification_uri_complete"].endswith(f"?code={code}")
        assert shown.data["expires_in"] == protocol.CODE_TTL_S
        assert box.agent.status()["state"] == "awaiting_approval"
        resp = await service.admin("POST", f"/v1/admin/codes/{code.lower()}/approve", ROOM)
        assert resp.status_code == 200 and resp.json()["serial"] == "RB-B1"
        async with asyncio.timeout(20):
            await enrolling
    finally:
        enrolling.cancel()
    assert (await box.next_event()).kind == "enrolled"
    await box.agent.checkin()
    committed = await box.next_event("config_committed")
    assert committed.data["settings"].room == "Ada"


async def test_unknown_box_waits_pending_until_admin_accepts(service, make_box):
    box = make_box("RB-C1")
    enrolling = asyncio.create_task(box.agent.enrol())
    try:
        await box.next_event("activation_code")
        pending = (await service.admin("GET", "/v1/admin/devices?state=pending")).json()
        assert [d["serial"] for d in pending["devices"]] == ["RB-C1"]
        resp = await service.admin("POST", "/v1/admin/devices/RB-C1/accept",
                                   {"site": "Annex", "room": "Lovelace"})
        assert resp.status_code == 200
        async with asyncio.timeout(20):
            await enrolling
    finally:
        enrolling.cancel()
    assert box.agent.identity.is_enrolled
    await box.agent.checkin()
    assert (await box.next_event("config_committed")).data["settings"].site == "Annex"
    audit = (await service.admin("GET", "/v1/admin/audit")).json()["audit"]
    assert "device.accept.pending" in [a["action"] for a in audit]


@pytest.mark.parametrize("how", ["reject_pending", "deny_code"])
async def test_rejected_box_stops_enrolling_with_reason(service, make_box, how):
    box = make_box("RB-C2")
    enrolling = asyncio.create_task(box.agent.enrol())
    try:
        code = (await box.next_event("activation_code")).data["user_code"]
        path = ("/v1/admin/devices/RB-C2/reject" if how == "reject_pending"
                else f"/v1/admin/codes/{code}/deny")
        assert (await service.admin("POST", path)).status_code == 200
        with pytest.raises(EnrolmentError, match="access_denied"):
            async with asyncio.timeout(20):
                await enrolling
    finally:
        enrolling.cancel()
    assert (await box.next_event("enrolment_rejected")).data["reason"]
    assert box.agent.status()["state"] == "rejected"
    # Asking again is refused outright.
    again = await service.device("POST", protocol.ENROL_PATH, {
        "serial": "RB-C2", "csr": box.agent.identity.csr()})
    assert again.status_code == 403


async def _grant(service, box) -> dict:
    resp = await service.device("POST", protocol.ENROL_PATH, {
        "serial": box.agent.identity.serial, "csr": box.agent.identity.csr()})
    assert resp.status_code == 202, resp.text
    return resp.json()


async def test_polling_too_fast_gets_slow_down_and_a_longer_interval(service, make_box):
    service.clock.frozen_at = time.time()
    grant = await _grant(service, make_box("RB-S1"))
    first = await service.device("POST", protocol.TOKEN_PATH, {"device_code": grant["device_code"]})
    assert first.json()["error"] == protocol.PENDING
    second = await service.device("POST", protocol.TOKEN_PATH, {"device_code": grant["device_code"]})
    assert second.status_code == 400
    assert second.json()["error"] == protocol.SLOW_DOWN
    assert second.json()["interval"] == pytest.approx(grant["interval"] + protocol.SLOW_DOWN_STEP_S)


async def test_code_expires_after_fifteen_minutes(service, make_box):
    grant = await _grant(service, make_box("RB-E1"))
    service.clock.offset = protocol.CODE_TTL_S + 1
    polled = await service.device("POST", protocol.TOKEN_PATH, {"device_code": grant["device_code"]})
    assert polled.json()["error"] == protocol.EXPIRED
    approve = await service.admin("POST", f"/v1/admin/codes/{grant['user_code']}/approve", ROOM)
    assert approve.status_code == 404 and "expired" in approve.json()["detail"]


async def test_device_code_works_once(service, make_box):
    box = make_box("RB-O1")
    grant = await _grant(service, box)
    assert (await service.admin("POST", f"/v1/admin/codes/{grant['user_code']}/approve",
                                ROOM)).status_code == 200
    token = await service.device("POST", protocol.TOKEN_PATH, {"device_code": grant["device_code"]})
    assert token.status_code == 200 and "BEGIN CERTIFICATE" in token.json()["certificate"]
    service.clock.offset = 10    # past the poll interval, so this is not a slow_down
    replay = await service.device("POST", protocol.TOKEN_PATH, {"device_code": grant["device_code"]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    second = await service.admin("POST", f"/v1/admin/codes/{grant['user_code']}/approve", ROOM)
    assert second.status_code == 404


async def test_guessing_codes_is_rate_limited(service, make_box):
    grant = await _grant(service, make_box("RB-R1"))
    for guess in ("AAAA-AAAA", "CCCC-CCCC", "DDDD-DDDD"):   # FAST allows 3 failures
        wrong = await service.admin("POST", f"/v1/admin/codes/{guess}/approve", ROOM)
        assert wrong.status_code == 404
    limited = await service.admin("POST", f"/v1/admin/codes/{grant['user_code']}/approve", ROOM)
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    service.clock.offset = 601   # the window moves on
    assert (await service.admin("POST", f"/v1/admin/codes/{grant['user_code']}/approve",
                                ROOM)).status_code == 200


async def test_enrolled_serial_cannot_enrol_again(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{"serial": "RB-D1"}]})
    await make_box("RB-D1").agent.enrol()
    impostor = make_box("RB-D1-copy")
    resp = await service.device("POST", protocol.ENROL_PATH, {
        "serial": "RB-D1", "csr": impostor.agent.identity.csr()})
    assert resp.status_code == 400 and "csr common name" in resp.json()["detail"]
    from provisioning import crypto
    key = crypto.new_tls_key()
    resp = await service.device("POST", protocol.ENROL_PATH, {
        "serial": "RB-D1", "csr": crypto.make_csr(key, "RB-D1").decode()})
    assert resp.status_code == 409 and resp.json()["error"] == "already_enrolled"


async def test_admin_api_refuses_missing_or_wrong_token(service):
    assert (await service.admin("GET", "/v1/admin/devices", token="nope")).status_code == 401
    openapi = await service.admin("GET", "/openapi.json")
    assert "/v1/admin/codes/{user_code}/approve" in openapi.json()["paths"]


async def test_import_rejects_bad_meeting_url_naming_the_key(service):
    resp = await service.admin("POST", "/v1/admin/devices/import", {
        "rows": [{"serial": "RB-X1", "meeting_url": "http://plain.example.org"}]})
    assert resp.status_code == 422
    assert "settings.meeting_url" in resp.json()["detail"]
    assert "http://plain.example.org" in resp.json()["detail"]


async def test_box_refuses_service_whose_ca_does_not_match_pin(service, make_box):
    box = make_box("RB-P1")
    box.agent._locate = lambda: ServiceLocation(service.url, "0" * 64, "test seed")
    with pytest.raises(DiscoveryError, match="pinned 0000"):
        await box.agent.enrol()
    assert not box.agent.identity.is_enrolled


async def test_agent_task_enrols_checks_in_and_applies_config_on_its_own(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import",
                        {"rows": [{"serial": "RB-RUN", **ROOM}]})
    box = make_box("RB-RUN")
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(box.agent.run())
        assert (await box.next_event("enrolled")).data["serial"] == "RB-RUN"
        committed = await box.next_event("config_committed")
        assert committed.data["settings"].meeting_url == ROOM["meeting_url"]
        assert box.agent.status()["state"] == "provisioned"
        assert box.agent.status()["config_version"] == 1
        task.cancel()
    assert task.cancelled()


async def test_agent_keeps_trying_until_the_service_is_reachable(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{"serial": "RB-LATE"}]})
    box = make_box("RB-LATE")
    import socket
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = ServiceLocation(f"https://127.0.0.1:{s.getsockname()[1]}", service.pin, "test")
    answers = [dead, dead]
    box.agent._locate = lambda: answers.pop() if answers else service.location()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(box.agent.run())
        first = await box.next_event()
        assert first.kind == "service_unreachable" and "cannot fetch CA" in first.data["reason"]
        assert (await box.next_event("enrolled")).data["serial"] == "RB-LATE"
        task.cancel()


async def test_removed_box_loses_its_certificate_and_enrols_again(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import",
                        {"rows": [{"serial": "RB-REM", **ROOM}]})
    box = make_box("RB-REM")
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(box.agent.run())
        assert (await box.next_event("config_committed")).data["version"] == 1
        old_cert = box.agent.identity.cert_path.read_text()
        removed = await service.admin("DELETE", "/v1/admin/devices/RB-REM")
        assert removed.status_code == 200
        revoked = await box.next_event("enrolment_revoked")
        assert "403" in revoked.data["reason"]
        # Unknown again, so it asks for a code (path C/B); pre-registering it (A) also works.
        await box.next_event("activation_code")
        await service.admin("POST", "/v1/admin/devices/import",
                            {"rows": [{"serial": "RB-REM", **ROOM, "room": "Hopper"}]})
        assert (await box.next_event("enrolled")).data["serial"] == "RB-REM"
        again = await box.next_event("config_committed")
        # Versions keep rising across the removal, so the box accepts the new config.
        assert again.data["version"] == 2 and again.data["settings"].room == "Hopper"
        assert box.agent.identity.cert_path.read_text() != old_cert
        task.cancel()
    audit = (await service.admin("GET", "/v1/admin/audit")).json()["audit"]
    assert "device.remove" in [a["action"] for a in audit]


async def test_import_rejects_unknown_columns_naming_line_and_column(service):
    resp = await service.admin("POST", "/v1/admin/devices/import", {
        "rows": [{"serial": "RB-X2"}, {"serial": "RB-X3", "floor": "3"}]})
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("line 3: column 'floor' must be one of serial, site")
    listed = (await service.admin("GET", "/v1/admin/devices")).json()["devices"]
    assert listed == []


async def test_restarted_box_starts_from_its_committed_config(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import",
                        {"rows": [{"serial": "RB-BOOT", **ROOM}]})
    fresh = make_box("RB-BOOT")
    assert fresh.agent.running_settings.meeting_url == ""      # the built-in safe config
    await fresh.agent.enrol()
    await fresh.agent.checkin()
    await fresh.next_event("config_committed")
    rebooted = make_box("RB-BOOT")                              # same state directory
    assert rebooted.agent.status()["state"] == "provisioned"
    assert rebooted.agent.running_settings.meeting_url == ROOM["meeting_url"]


async def test_oversized_request_bodies_are_refused_before_parsing(service):
    huge = {"serial": "RB-BIG", "csr": "x" * 100_000}
    resp = await service.device("POST", protocol.ENROL_PATH, huge)
    assert resp.status_code == 413
    assert resp.json()["detail"] == "request body must be at most 65536 bytes"


async def test_oversized_chunked_body_is_refused_too(service):
    import httpx

    async def chunks():
        for _ in range(100):
            yield b"x" * 1024

    async with httpx.AsyncClient(verify=service.ssl, timeout=20) as client:
        resp = await client.post(service.url + protocol.ENROL_PATH, content=chunks(),
                                 headers={"content-type": "application/json"})
    assert resp.status_code == 413


async def test_activation_page_from_the_qr_code_approves_the_box(service, make_box):
    import httpx
    box = make_box("RB-QR")
    enrolling = asyncio.create_task(box.agent.enrol())
    try:
        shown = (await box.next_event("activation_code")).data
        async with httpx.AsyncClient(verify=service.ssl, timeout=20) as client:
            form = await client.get(shown["verification_uri_complete"])
            assert form.status_code == 200
            assert f'name="code" value="{shown["user_code"]}"' in form.text
            fields = {"code": shown["user_code"], "site": "HQ", "room": "Turing",
                      "meeting_url": "whip+https://meet.example.org/turing"}
            wrong = await client.post(service.url + protocol.ACTIVATE_PATH,
                                      data=fields | {"token": "guess"})
            assert wrong.status_code == 401 and "wrong admin token" in wrong.text
            ok = await client.post(service.url + protocol.ACTIVATE_PATH,
                                   data=fields | {"token": service.token})
            assert ok.status_code == 200 and "Box RB-QR is now set up for Turing" in ok.text
        async with asyncio.timeout(20):
            await enrolling
    finally:
        enrolling.cancel()
    await box.agent.checkin()
    assert (await box.next_event("config_committed")).data["settings"].room == "Turing"


async def test_activation_page_escapes_what_it_echoes(service):
    import httpx
    async with httpx.AsyncClient(verify=service.ssl, timeout=20) as client:
        page = await client.get(service.url + protocol.ACTIVATE_PATH,
                                params={"code": '"><script>alert(1)</script>'})
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
