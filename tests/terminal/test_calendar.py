"""The room calendar: a plain .ics feed over HTTP and a real Radicale CalDAV server; the
meeting URL from URL, LOCATION or DESCRIPTION; live-now or within 10 minutes, else the
standing meeting; recurring events; the upcoming notice."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import http.server
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from terminal.calendar import CalendarPoller, choose, parse_events
from terminal.state import Event, State, StateMachine

pytestmark = pytest.mark.timeout(60)
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone.utc)
LIVE = "janus+https://meet.example.org/janus?room=1001"
SOON = "janus+https://meet.example.org/janus?room=1002&pin=1234"
STANDUP = "whip+https://whip.example.org/ingest/standup"
STANDING = "janus+https://meet.example.org/janus?room=1"


def _t(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def vevent(uid: str, summary: str, start: dt.datetime, minutes: int, extra: str = "") -> str:
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{_t(start)}\r\nDTSTART:{_t(start)}\r\n"
            f"DTEND:{_t(start + dt.timedelta(minutes=minutes))}\r\nSUMMARY:{summary}\r\n{extra}END:VEVENT\r\n")


def vcalendar(*events: str) -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//roombox tests//EN\r\n" + "".join(events) + "END:VCALENDAR\r\n"


def room_calendar(now: dt.datetime) -> str:
    return vcalendar(
        vevent("live", "Design review", now - dt.timedelta(minutes=20), 60, f"URL:{LIVE}\r\n"),
        vevent("later", "Planning", now + dt.timedelta(minutes=90), 30, f"LOCATION:{SOON}\r\n"),
        vevent("no-url", "Lunch", now - dt.timedelta(minutes=5), 60, "LOCATION:Canteen\r\n"),
        "BEGIN:VEVENT\r\nUID:allday\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;VALUE=DATE:20261123\r\n"
        f"SUMMARY:Offsite\r\nURL:{STANDING}\r\nEND:VEVENT\r\n")


def test_live_event_wins_and_url_may_hide_in_description():
    meetings = parse_events([room_calendar(NOW)], NOW)
    current, upcoming = choose(meetings, NOW)
    assert current.summary == "Design review" and current.url == LIVE
    assert upcoming is None
    assert "Offsite" not in [m.summary for m in meetings], "all-day events are not meetings"
    text = vcalendar(vevent("d", "Sync", NOW + dt.timedelta(minutes=8), 30,
                            f"DESCRIPTION:Join here: {SOON}. Agenda follows\r\n"))
    current, upcoming = choose(parse_events([text], NOW), NOW)
    assert current.url == SOON and upcoming.summary == "Sync"


def test_recurring_standup_is_expanded_and_only_counts_within_ten_minutes():
    start = NOW - dt.timedelta(days=30) + dt.timedelta(minutes=9)
    text = vcalendar(vevent("standup", "Stand-up", start, 15, f"URL:{STANDUP}\r\nRRULE:FREQ=DAILY\r\n"))
    current, upcoming = choose(parse_events([text], NOW), NOW)
    assert current.url == STANDUP and upcoming.start == NOW + dt.timedelta(minutes=9)
    eleven_before = NOW - dt.timedelta(minutes=2)
    assert choose(parse_events([text], eleven_before), eleven_before) == (None, None)


def test_join_button_prefers_the_calendar_then_the_standing_meeting():
    machine = StateMachine(meeting_url=STANDING)
    machine.handle(Event("devices_opened", {"failures": {}}))
    machine.handle(Event("calendar_updated", {"meeting_url": LIVE, "upcoming": None}))
    machine.handle(Event("join_pressed"))
    assert machine.state == State.JOINING and machine.call_url == LIVE
    machine.handle(Event("join_pressed"))
    machine.handle(Event("call_ended", {"reason": "left"}))
    machine.handle(Event("calendar_updated", {"meeting_url": None, "upcoming": None}))
    machine.handle(Event("join_pressed"))
    assert machine.call_url == STANDING


@contextlib.contextmanager
def ics_server(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


async def test_plain_ics_feed_over_http_posts_the_meeting_and_the_upcoming_notice(tmp_path):
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    (tmp_path / "room.ics").write_text(vcalendar(
        vevent("soon", "Board meeting", now + dt.timedelta(minutes=7), 60, f"LOCATION:{SOON}\r\n")))
    posted: list[Event] = []
    with ics_server(tmp_path) as base:
        poller = CalendarPoller(f"{base}/room.ics", posted.append)
        await poller.refresh()
        await poller.refresh()       # nothing changed: nothing posted again
        assert poller.status()["protocol"] == "ics"
        missing = CalendarPoller(f"{base}/nope.ics", lambda event: None)
        await missing.refresh()
        assert "answered HTTP 404" in missing.status()["error"]
    assert len(posted) == 1
    assert posted[0].data["meeting_url"] == SOON
    upcoming = posted[0].data["upcoming"]
    assert upcoming["summary"] == "Board meeting" and upcoming["url"].endswith("pin=***")
    machine = StateMachine()
    machine.handle(posted[0])
    assert machine.notices[-1].startswith("calendar: Board meeting starts at ")


@pytest.fixture
def radicale(tmp_path):
    if shutil.which("radicale") is None:
        pytest.fail("calendar: the Debian 'radicale' package is not installed (listed in deps/apt.txt)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "radicale.conf"
    config.write_text(f"[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = none\n[rights]\ntype = authenticated\n"
                      f"[storage]\nfilesystem_folder = {tmp_path / 'collections'}\n[logging]\nlevel = warning\n")
    process = subprocess.Popen(["radicale", "--config", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def _until_up(base: str) -> None:
    async with asyncio.timeout(15):
        while True:
            try:
                async with httpx.AsyncClient() as client:
                    await client.get(base + "/")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)


async def test_caldav_collection_on_radicale(radicale):
    await _until_up(radicale)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    collection = f"{radicale}/room/calendar/"
    async with httpx.AsyncClient(timeout=10, auth=("room", "pw")) as client:
        assert (await client.request("MKCALENDAR", collection)).status_code == 201
        for uid, text in (("live", vevent("live", "Design review", now - dt.timedelta(minutes=10), 60,
                                          f"DESCRIPTION:Video: {LIVE}\r\n")),
                          ("old", vevent("old", "Yesterday", now - dt.timedelta(days=1), 60, f"URL:{SOON}\r\n"))):
            reply = await client.put(f"{collection}{uid}.ics", content=vcalendar(text),
                                     headers={"Content-Type": "text/calendar"})
            assert reply.status_code == 201
    posted: list[Event] = []
    poller = CalendarPoller(collection.replace("http://", "http://room:pw@"), posted.append)
    await poller.refresh()
    status = poller.status()
    assert status["url"] == collection.replace("http://", "http://room:***@"), "the password is masked"
    assert status | {"url": None, "next": None} == {"url": None, "protocol": "caldav", "events": 1,
                                                    "fetches": 1, "error": None, "next": None}
    assert [m["summary"] for m in status["next"]] == ["Design review"], "the live meeting is listed; yesterday's is not"
    assert posted[-1].data == {"meeting_url": LIVE, "upcoming": None}
