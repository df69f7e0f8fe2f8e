"""The room calendar: which meeting the join button joins, and the upcoming-meeting notice.

The calendar is an iCalendar feed over HTTP(S) (RFC 5545) or a CalDAV calendar collection
(RFC 4791): we first ask with a CalDAV ``REPORT calendar-query`` for the hours around now,
and fall back to a plain ``GET`` of the feed when the server does not speak CalDAV.
Recurring events are expanded. An event's meeting URL is the first meeting URL (our
schemes: janus+http(s), janus+ws(s), whip+http(s)) in its URL, LOCATION or DESCRIPTION.

The room's meeting is the event live now, else the one starting within ``AHEAD_S``; with
none, the join button falls back to the standing meeting. An event starting within
``AHEAD_S`` is announced as ``upcoming``.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import icalendar
import recurring_ical_events

from terminal.errors import CalendarError
from terminal.state import Event, redact

log = logging.getLogger("roombox.terminal.calendar")

AHEAD_S = 600                # "starting within 10 minutes" (issue 5)
NEXT_LISTED = 5
POLL_S = 60.0
HTTP_TIMEOUT_S = 10.0
WINDOW = dt.timedelta(hours=12)   # what we fetch and expand around now
MAX_BYTES = 5 * 1024 * 1024
MEETING_URL = re.compile(r"(?:janus\+(?:https?|wss?)|whip\+https?)://[^\s<>\"'\\]+", re.IGNORECASE)
CALDAV_QUERY = """<?xml version="1.0" encoding="utf-8"?>
<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:prop><c:calendar-data/></d:prop>
  <c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">
    <c:time-range start="{start}" end="{end}"/>
  </c:comp-filter></c:comp-filter></c:filter>
</c:calendar-query>"""
CALDAV_DATA = re.compile(r"<(?:\w+:)?calendar-data[^>]*>(.*?)</(?:\w+:)?calendar-data>", re.DOTALL)


@dataclass(frozen=True)
class Meeting:
    """One calendar event occurrence (times timezone-aware) and its meeting URL, if any."""

    summary: str
    start: dt.datetime
    end: dt.datetime
    url: str | None

    def is_live(self, now: dt.datetime) -> bool:
        return self.start <= now < self.end

    def starts_within(self, now: dt.datetime, seconds: float) -> bool:
        return now < self.start <= now + dt.timedelta(seconds=seconds)


def meeting_url_of(event: Any) -> str | None:
    """The first meeting URL in the event's URL, LOCATION or DESCRIPTION."""
    for key in ("URL", "LOCATION", "DESCRIPTION"):
        value = event.get(key)
        if value is None:
            continue
        match = MEETING_URL.search(str(value).replace("&amp;", "&"))
        if match:
            return match.group(0).rstrip(".,;)")
    return None


def parse_events(texts: list[str], now: dt.datetime) -> list[Meeting]:
    """Every event occurrence within WINDOW of ``now`` in the iCalendar ``texts`` (blocking:
    call in a thread). All-day events are not meetings. Raises CalendarError."""
    meetings = []
    for text in texts:
        try:
            calendar = icalendar.Calendar.from_ical(text)
            occurrences = recurring_ical_events.of(calendar).between(now - WINDOW, now + WINDOW)
        except (ValueError, KeyError, TypeError) as exc:
            raise CalendarError(f"calendar: cannot parse iCalendar data ({exc})") from None
        for event in occurrences:
            start = event.get("DTSTART")
            if start is None or not isinstance(start.dt, dt.datetime):
                continue
            begin = _aware(start.dt)
            end_prop = event.get("DTEND")
            if end_prop is not None and isinstance(end_prop.dt, dt.datetime):
                end = _aware(end_prop.dt)
            elif event.get("DURATION") is not None:
                end = begin + event.get("DURATION").dt
            else:
                end = begin
            meetings.append(Meeting(str(event.get("SUMMARY", "meeting")), begin, end, meeting_url_of(event)))
    return sorted(meetings, key=lambda m: m.start)


def choose(meetings: list[Meeting], now: dt.datetime) -> tuple[Meeting | None, Meeting | None]:
    """(the room's meeting now: live, else starting within AHEAD_S; the upcoming one)."""
    joinable = [m for m in meetings if m.url]
    live = [m for m in joinable if m.is_live(now)]
    soon = [m for m in joinable if m.starts_within(now, AHEAD_S)]
    current = live[-1] if live else (soon[0] if soon else None)   # the latest-started live one
    upcoming = next((m for m in meetings if m.starts_within(now, AHEAD_S)), None)
    return current, upcoming


def _aware(value: dt.datetime) -> dt.datetime:
    # Floating times (no TZID) are the room's local time (RFC 5545 §3.3.5).
    return value if value.tzinfo is not None else value.astimezone()


class CalendarSource:
    """Fetches the calendar: CalDAV REPORT first, plain GET as the fallback. TLS verified."""

    def __init__(self, url: str, verify_tls: bool | str = True) -> None:
        self.url = url
        self.verify_tls = verify_tls
        self.protocol = "unknown"

    async def fetch(self, now: dt.datetime) -> list[str]:
        """iCalendar texts for the hours around ``now``. Raises CalendarError."""
        async with httpx.AsyncClient(verify=self.verify_tls, timeout=HTTP_TIMEOUT_S,
                                     trust_env=False, follow_redirects=True) as client:
            try:
                if self.protocol in ("unknown", "caldav"):
                    texts = await self._report(client, now)
                    if texts is not None:
                        self.protocol = "caldav"
                        return texts
                response = await client.get(self.url)
            except httpx.HTTPError as exc:
                raise CalendarError(f"calendar: cannot fetch {redact(self.url)} ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            raise CalendarError(f"calendar: GET {redact(self.url)} answered HTTP {response.status_code}")
        if len(response.content) > MAX_BYTES or "BEGIN:VCALENDAR" not in response.text[:1000]:
            raise CalendarError(f"calendar: {redact(self.url)} did not return an iCalendar feed "
                                f"(content-type {response.headers.get('content-type')!r})")
        self.protocol = "ics"
        return [response.text]

    async def _report(self, client: httpx.AsyncClient, now: dt.datetime) -> list[str] | None:
        stamp = "%Y%m%dT%H%M%SZ"
        utc = now.astimezone(dt.timezone.utc)
        body = CALDAV_QUERY.format(start=(utc - WINDOW).strftime(stamp), end=(utc + WINDOW).strftime(stamp))
        response = await client.request("REPORT", self.url, content=body,
                                        headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
        if response.status_code != 207:
            return None            # not a CalDAV collection: a plain feed, fetched with GET
        return [html.unescape(m) for m in CALDAV_DATA.findall(response.text)]


class CalendarPoller:
    """Polls the room calendar and posts ``calendar_updated`` when the room's meeting or the
    upcoming notice changes. A failed fetch keeps the last events (and says so in status)."""

    def __init__(self, url: str, post: Callable[[Event], None], verify_tls: bool | str = True,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.source = CalendarSource(url, verify_tls)
        self.post = post
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self.meetings: list[Meeting] = []
        self.last_error = ""
        self.fetches = 0
        self._posted: tuple | None = None

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(POLL_S)

    async def refresh(self) -> None:
        """Fetch, parse and post (if anything changed) once."""
        now = self.clock()
        try:
            texts = await self.source.fetch(now)
            self.meetings = await asyncio.to_thread(parse_events, texts, now)
            self.fetches += 1
            self.last_error = ""
        except CalendarError as exc:
            self.last_error = str(exc)
            log.warning("%s; keeping the last %d events", exc, len(self.meetings))
        current, upcoming = choose(self.meetings, now)
        payload = {"meeting_url": current.url if current else None,
                   "upcoming": _describe(upcoming)}
        key = (payload["meeting_url"], str(payload["upcoming"]))
        if key != self._posted:
            self._posted = key
            self.post(Event("calendar_updated", payload))

    def status(self) -> dict[str, Any]:
        """Feed health and, in ``next``, the meetings not yet over (the room screen lists them)."""
        now = self.clock()
        coming = sorted((m for m in self.meetings if m.end > now), key=lambda m: m.start)
        return {"url": redact(self.source.url), "protocol": self.source.protocol,
                "events": len(self.meetings), "fetches": self.fetches, "error": self.last_error or None,
                "next": [{"summary": m.summary, "start": m.start.isoformat(timespec="minutes"),
                          "end": m.end.isoformat(timespec="minutes")} for m in coming[:NEXT_LISTED]]}


def _describe(meeting: Meeting | None) -> dict[str, Any] | None:
    if meeting is None:
        return None
    return {"summary": meeting.summary, "start": meeting.start.isoformat(timespec="minutes"),
            "url": redact(meeting.url)}
