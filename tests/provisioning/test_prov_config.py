"""Signed config on the box: trial, commit, rollback to last-known-good, every rejection."""
from __future__ import annotations

import time

import pytest

from provisioning import crypto
from provisioning.agent.config_store import ConfigStore
from provisioning.errors import ConfigRejected
from provisioning.schema import CONFIG_TYP, MAX_DOCUMENT_BYTES, SAFE_SETTINGS

SERIAL = "RB-CFG"


@pytest.fixture
def signing_key():
    return crypto.key_pem(crypto.new_signing_key())


@pytest.fixture
def store(tmp_path, signing_key):
    pub = crypto.public_pem(crypto.load_key(signing_key))
    return ConfigStore(tmp_path, SERIAL, pub)


def document(key: bytes, version: int, settings: dict | None = None, **overrides) -> str:
    now = int(time.time())
    payload = {"sub": SERIAL, "ver": version, "iat": now, "exp": now + 3600,
               "settings": settings if settings is not None
               else {"meeting_url": f"whip+https://meet.example.org/v{version}"}}
    payload.update(overrides)
    return crypto.sign_document(payload, key, CONFIG_TYP)


def test_box_without_config_runs_the_safe_config(store):
    assert store.running == SAFE_SETTINGS
    assert store.running.meeting_url == "" and store.version == 0


def test_committed_config_survives_restart(tmp_path, store, signing_key):
    store.begin_trial(document(signing_key, 1))
    store.commit()
    again = ConfigStore(tmp_path, SERIAL, store._key)
    assert again.version == 1
    assert again.running.meeting_url == "whip+https://meet.example.org/v1"


def test_restart_during_trial_rolls_back_to_last_known_good(tmp_path, store, signing_key):
    store.begin_trial(document(signing_key, 1))
    store.commit()
    store.begin_trial(document(signing_key, 2))
    # The process dies here (crash loop protection): the next start must not run v2.
    again = ConfigStore(tmp_path, SERIAL, store._key)
    assert again.version == 1 and again.trial is None
    assert again.last_rollback == {"version": 2, "reason": "restarted while trying version 2"}
    assert again.has_failed(2)


def _rejects(store, token: str, match: str) -> None:
    files = {p.name: p.read_bytes() for p in store.dir.iterdir()}
    before = store.running
    with pytest.raises(ConfigRejected, match=match):
        store.begin_trial(token)
    assert store.running == before
    assert {p.name: p.read_bytes() for p in store.dir.iterdir()} == files


@pytest.mark.parametrize("case, match", [
    ("other_key", "signature check failed"),
    ("expired", "exp must be in the future"),
    ("same_version", "ver must be greater than the running version 1, got 1"),
    ("lower_version", "ver must be greater than the running version 1, got 0|ver must be"),
    ("oversized", f"at most {MAX_DOCUMENT_BYTES} bytes"),
    ("unknown_setting", r"settings\.volume must be one of .*unknown key.*got 11"),
    ("unknown_envelope_key", "debug must be one of"),
    ("bad_value", r"settings\.log_level must be one of debug, info, warning, error, got 'loud'"),
    ("bad_time_zone", r"settings\.time_zone must be an IANA time zone.*Mars/Olympus"),
    ("stun_server", r"settings\.turn_servers\[0\]\.urls must be turn: or turns: URLs"),
    ("other_box", "sub must be this box's serial"),
    ("not_jws", "not a compact JWS|signature check failed"),
])
def test_bad_documents_are_rejected_and_running_config_untouched(store, signing_key, case,
                                                                  match):
    store.begin_trial(document(signing_key, 1))
    store.commit()
    other = crypto.key_pem(crypto.new_signing_key())
    token = {
        "other_key": lambda: document(other, 2),
        "expired": lambda: document(signing_key, 2, exp=int(time.time()) - 1),
        "same_version": lambda: document(signing_key, 1),
        "lower_version": lambda: document(signing_key, 0),
        "oversized": lambda: document(signing_key, 2, {"room": "x" * 100}) + "A" * MAX_DOCUMENT_BYTES,
        "unknown_setting": lambda: document(signing_key, 2, {"volume": 11}),
        "unknown_envelope_key": lambda: document(signing_key, 2, debug=True),
        "bad_value": lambda: document(signing_key, 2, {"log_level": "loud"}),
        "bad_time_zone": lambda: document(signing_key, 2, {"time_zone": "Mars/Olympus"}),
        "stun_server": lambda: document(signing_key, 2, {
            "turn_servers": [{"urls": ["stun:stun.l.google.com:19302"]}]}),
        "other_box": lambda: document(signing_key, 2, sub="RB-OTHER"),
        "not_jws": lambda: "definitely.not.ajws",
    }[case]()
    _rejects(store, token, match)
    assert store.version == 1


async def test_failed_health_check_rolls_back_and_reports_why(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{
        "serial": "RB-H1", "meeting_url": "whip+https://meet.example.org/good"}]})
    box = make_box("RB-H1")
    await box.agent.enrol()
    await box.agent.checkin()
    assert (await box.next_event("config_committed")).data["version"] == 1
    published = await service.admin("POST", "/v1/admin/devices/RB-H1/config", {"settings": {
        "meeting_url": "whip+https://meet.example.org/broken", "log_level": "debug",
        "turn_servers": [{"urls": ["turns:turn.example.org:443"], "username": "u",
                          "credential": "secret"}]}})
    assert published.json()["version"] == 2
    box.healthy, box.health_reason = False, "janus unreachable at meet.example.org/broken"
    await box.agent.checkin()
    received = await box.next_event("config_received")
    assert received.data["settings"].meeting_url == "whip+https://meet.example.org/broken"
    rolled = await box.next_event("config_rolled_back")
    assert rolled.data["version"] == 2
    assert rolled.data["reason"] == "janus unreachable at meet.example.org/broken"
    assert rolled.data["settings"].meeting_url == "whip+https://meet.example.org/good"
    assert box.agent.store.version == 1
    # The failed version is not fetched again, and the service hears why.
    box.healthy = True
    await box.agent.checkin()
    assert "config_received" not in box.drain()
    device = (await service.admin("GET", "/v1/admin/devices")).json()["devices"][0]
    assert device["config_version"] == 1
    assert device["config_status"]["rolled_back"]["reason"].startswith("janus unreachable")
    # A fixed version 3 is taken.
    await service.admin("POST", "/v1/admin/devices/RB-H1/config", {"settings": {
        "meeting_url": "whip+https://meet.example.org/fixed"}})
    await box.agent.checkin()
    assert (await box.next_event("config_committed")).data["version"] == 3
    assert box.agent.store.running.meeting_url == "whip+https://meet.example.org/fixed"


async def test_service_refuses_to_sign_invalid_settings(service, make_box):
    await service.admin("POST", "/v1/admin/devices/import", {"rows": [{"serial": "RB-H2"}]})
    await make_box("RB-H2").agent.enrol()
    resp = await service.admin("POST", "/v1/admin/devices/RB-H2/config",
                               {"settings": {"max_send_bitrate_bps": 10}})
    assert resp.status_code == 422
    assert resp.json()["detail"] == ("settings.max_send_bitrate_bps must be an integer from "
                                     "64000 to 20000000, got 10")
