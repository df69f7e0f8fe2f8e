"""The screen model: what each page shows, derived from a status aggregate."""
from __future__ import annotations

import datetime as dt

from terminal.screen.model import build

TZ = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 23, 9, 52, tzinfo=TZ)


def event(title, h, m, minutes=30):
    start = NOW.replace(hour=h, minute=m)
    return {"title": title, "start": start.isoformat(), "end": (start + dt.timedelta(minutes=minutes)).isoformat()}


def test_idle_lists_todays_remaining_meetings_and_announces_one_within_ten_minutes():
    events = [event("Later", 14, 0), event("Soon", 10, 0), event("Over", 8, 0),
              {"summary": "Epoch", "start": NOW.replace(hour=11).timestamp()},
              event("Tomorrow", 9, 55) | {"start": (NOW + dt.timedelta(days=1)).isoformat()}]
    model = build({"state": "idle", "calendar": {"events": events}}, NOW)
    assert [m.title for m in model.meetings] == ["Soon", "Epoch", "Later"]
    assert model.upcoming is not None and model.upcoming.title == "Soon"
    later = build({"state": "idle", "calendar": {"events": [event("Far", 10, 3)]}}, NOW)
    assert later.upcoming is None             # 11 minutes ahead: not yet


def test_unprovisioned_takes_rfc8628_names_and_the_board_serial():
    status = {"state": "unprovisioned", "board": {"serial": "RBX1"}, "network": {"online": False},
              "provisioning": {"user_code": "ABCD-EFGH", "verification_uri": "https://x.test/a"}}
    model = build(status, NOW)
    assert (model.activation_code, model.verification_url, model.serial) == ("ABCD-EFGH", "https://x.test/a", "RBX1")
    status["provisioning"]["serial"] = "RB-IDENTITY-7"        # the enrolled identity wins
    assert build(status, NOW).serial == "RB-IDENTITY-7"
    assert model.is_online is False and model.network_text == "Not connected"


def test_the_state_machines_upcoming_meeting_is_announced_and_titles_the_call():
    upcoming = {"summary": "Board meeting", "start": NOW.replace(hour=10, minute=30).isoformat()}
    status = {"state": "in_call", "call": "janus+https://x.test/janus?room=1&pin=***", "upcoming": upcoming}
    model = build(status, NOW)
    assert model.upcoming is not None and model.upcoming.title == "Board meeting"
    assert model.meeting_title == "Board meeting"


def test_network_quality_comes_from_rtt_and_loss():
    def quality(**session):
        return build({"state": "in_call", "call_session": session}, NOW).quality
    assert quality(rtt_ms=40, loss=0.001) == "good"
    assert quality(rtt_ms=200, loss=0.001) == "fair"
    assert quality(rtt_ms=40, loss=0.08) == "poor"
    assert quality(quality="fair", rtt_ms=10) == "fair"
    assert quality() == "unknown"


def test_degraded_says_in_plain_words_what_is_wrong_and_what_to_do():
    status = {"state": "degraded", "reason": "camera: unavailable (busy)",
              "lost_devices": {"camera": "unavailable (busy)"}}
    model = build(status, NOW)
    assert model.problem == "The camera is not working."
    assert "cable" in model.advice and model.detail == "camera: unavailable (busy)"
    chinese = build(status | {"room": {"language": "zh"}}, NOW)
    assert chinese.problem == "摄像头无法工作。"
    unknown = build({"state": "degraded", "reason": "janus: gone"}, NOW)
    assert unknown.problem == "The box is not working properly." and unknown.detail == "janus: gone"


def test_technician_view_summarises_health_and_flags_what_is_wrong():
    status = {"state": "degraded", "reason": "speaker: gone", "lost_devices": {"speaker": "gone"},
              "uptime_s": 3725, "board": {"cpu_temp_c": 85.0, "serial": "S1",
                                          "throttling": {"under_voltage": True}}}
    model = build(status, NOW, technician=True)
    assert model.screen == "technician"
    lines = {line.label: line for line in model.health}
    assert lines["Up for"].value == "1:02:05"
    assert not lines["CPU temperature"].is_ok and not lines["Power supply"].is_ok
    assert lines["Devices"].value == "speaker: gone" and not lines["Devices"].is_ok


def test_mute_and_unknown_states():
    assert build({"state": "in_call", "muted": True}, NOW).is_muted
    assert build({"state": "weird"}, NOW).screen == "degraded"
    assert build({"state": "idle", "room": {"language": "fr"}}, NOW).language == "en"


def test_the_calendar_pollers_status_with_only_a_count_lists_nothing():
    status = {"state": "idle", "calendar": {"url": "https://x.test/cal.ics", "events": 4, "fetches": 2}}
    assert build(status, NOW).meetings == ()
    listed = {"state": "idle", "calendar": {"events": 1, "next": [event("Listed", 11, 0)]}}
    assert [m.title for m in build(listed, NOW).meetings] == ["Listed"]


def test_idle_says_when_the_join_button_has_nothing_to_join():
    assert build({"state": "idle"}, NOW).can_join                      # unknown: no claim
    assert not build({"state": "idle", "meeting": None, "calendar_meeting": None}, NOW).can_join
    assert build({"state": "idle", "meeting": "janus+https://x.test/janus?room=1", "calendar_meeting": None},
                 NOW).can_join
