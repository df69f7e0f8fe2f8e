"""How a box is given its meeting locally: ``roombox run --meeting`` or the environment file
systemd reads (/etc/roombox/roombox.env); bad values stop start-up with a clear message."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from terminal.app import MeetingSettings
from terminal.conference import MeetingRejected, parse_meeting_url

NO_ARGS = argparse.Namespace(meeting=None, calendar=None, control_socket=None)


def test_environment_gives_meeting_calendar_and_turn_and_options_win():
    env = {"ROOMBOX_MEETING": "janus+https://meet.example.org/janus?room=7&pin=42",
           "ROOMBOX_CALENDAR": "https://cal.example.org/room.ics",
           "ROOMBOX_TURN_URL": "turns:turn.example.org:5349", "ROOMBOX_TURN_USERNAME": "box",
           "ROOMBOX_TURN_CREDENTIAL": "s3cret", "ROOMBOX_DISPLAY_NAME": "Room 4.12"}
    settings = MeetingSettings.from_args(NO_ARGS, env)
    assert settings.meeting_url.endswith("room=7&pin=42") and settings.display_name == "Room 4.12"
    assert settings.calendar_url == "https://cal.example.org/room.ics"
    (turn,) = settings.ice_servers
    assert (turn.urls, turn.username, turn.credential) == (["turns:turn.example.org:5349"], "box", "s3cret")
    assert "s3cret" not in repr(settings)
    given = argparse.Namespace(meeting="whip+https://whip.example.org/in", calendar=None, control_socket="/tmp/c.sock")
    assert MeetingSettings.from_args(given, env).meeting_url == "whip+https://whip.example.org/in"
    assert MeetingSettings.from_args(NO_ARGS, {}).ice_servers == (), "no ICE servers unless configured"


@pytest.mark.parametrize("env, message", [
    ({"ROOMBOX_TURN_URL": "stun:stun.example.org"}, "ROOMBOX_TURN_URL must be a turn: or turns: URL, got 'stun:stun.example.org'"),
    ({"ROOMBOX_MEETING": "https://meet.example.org/janus?room=1"},
     "scheme must be one of janus+http, janus+https, janus+ws, janus+wss, whip+http, whip+https, got 'https'"),
    ({"ROOMBOX_MEETING": "janus+https://meet.example.org/janus"}, "janus needs ?room=ROOM"),
    ({"ROOMBOX_MEETING": "janus+wss://meet.example.org/?pin=1"}, "janus needs ?room=ROOM"),
    ({"ROOMBOX_CALENDAR": "ftp://cal.example.org/x.ics"}, "calendar URL must start with http:// or https://"),
    ({"ROOMBOX_AUDIO_BEAM": "beamy"}, "ROOMBOX_AUDIO_BEAM must be one of mvdr, delay-and-sum, superdirective, got 'beamy'"),
    ({"ROOMBOX_LOSS_FLOOR_PCT": "lots"}, "ROOMBOX_LOSS_FLOOR_PCT must be a percentage from 0 to 50, got 'lots'"),
    ({"ROOMBOX_LOSS_FLOOR_PCT": "80"}, "ROOMBOX_LOSS_FLOOR_PCT must be a percentage from 0 to 50, got 80.0"),
])
def test_bad_local_config_is_rejected_naming_the_value(env, message):
    with pytest.raises(ValueError) as raised:
        MeetingSettings.from_args(NO_ARGS, env)
    assert message in str(raised.value)


def test_meeting_url_parts_and_redaction():
    meeting = parse_meeting_url("janus+https://meet.example.org:8089/janus?room=team-a&pin=9&display=Lobby")
    assert (meeting.endpoint, meeting.room, meeting.pin, meeting.display) == (
        "https://meet.example.org:8089/janus", "team-a", "9", "Lobby")
    assert "9" not in meeting.redacted().replace("8089", "")
    whip = parse_meeting_url("whip+https://whip.example.org/ingest/room?token=abc&region=eu")
    assert (whip.kind, whip.token, whip.extra) == ("whip", "abc", {"region": "eu"})
    with pytest.raises(MeetingRejected, match="no host"):
        parse_meeting_url("janus+http:///janus?room=1")


def test_run_refuses_a_bad_meeting_url_with_exit_2():
    result = subprocess.run([sys.executable, "-m", "terminal.cli", "run", "--meeting", "zoom://x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "meeting URL 'zoom://x': scheme must be one of" in result.stderr


def test_audio_beam_from_the_environment_reaches_the_calls_pipeline():
    from hal.microphone import open_microphone
    from hal.profile import load_profile
    from terminal.session import CallSession
    settings = MeetingSettings.from_args(NO_ARGS, {"ROOMBOX_AUDIO_BEAM": "mvdr"})
    assert settings.audio_beam == "mvdr"
    assert MeetingSettings.from_args(NO_ARGS, {}).audio_beam == "delay-and-sum"
    profile = load_profile("sim")
    session = CallSession("janus+http://127.0.0.1:9/janus?room=1", profile, lambda event: None,
                          audio_beam=settings.audio_beam)
    with open_microphone(profile.microphone) as microphone:
        processor = session._audio_processor(microphone)
    beam = next(stage for stage in processor.stages if stage.name == "beam")
    assert beam.status()["method"] == "mvdr"


def test_loss_floor_from_the_environment_reaches_video_fec_and_opus_redundancy():
    """ROOMBOX_LOSS_FLOOR_PCT: the loss a call plans for on the viewer legs it cannot see."""
    from hal.profile import load_profile
    from media.video import VideoConfig
    from terminal.session import CallSession
    assert MeetingSettings.from_args(NO_ARGS, {}).loss_floor_pct is None
    settings = MeetingSettings.from_args(NO_ARGS, {"ROOMBOX_LOSS_FLOOR_PCT": "35%"})
    assert settings.loss_floor_pct == 35.0
    session = CallSession("janus+http://127.0.0.1:9/janus?room=1", load_profile("sim"), lambda event: None,
                          video_config=VideoConfig(encoder="libx264"), loss_floor_pct=settings.loss_floor_pct)
    assert session.video_config.fec_min_loss_pct == 35.0 and session.video_config.encoder == "libx264"
    default = CallSession("janus+http://127.0.0.1:9/janus?room=1", load_profile("sim"), lambda event: None)
    assert default.video_config.fec_min_loss_pct == VideoConfig().fec_min_loss_pct == 0.0
    # 35 % is where Opus goes to three copies of each packet at 32 kbit/s.
    assert session.opus_redundancy().encoder.copies == 3
    assert default.opus_redundancy().encoder.copies == 2
