"""What the room screen shows, derived from the terminal's status aggregate.

``build(status, now, ...)`` turns the one status dict every view reads into a frozen
``ScreenModel``; renderers draw only from that model, so a screen can be rendered from a
known state in tests and screenshots. Keys read (all optional but ``state``):

- ``state``, ``reason``, ``muted``, ``lost_devices``, ``notices``, ``uptime_s``, ``profile``,
  ``board`` (``serial``, ``cpu_temp_c``, ``throttling``, ``memory``, ``disk``),
  ``upcoming`` ({``summary``, ``start``}: the calendar's meeting within 10 minutes),
  ``meeting`` and ``calendar_meeting`` (what the join button would join) -
  from Terminal.status() and its state machine;
- ``call_session``: ``rtt_ms`` and ``loss`` (fraction) for the network-quality bars, or a
  ready ``quality`` ("good", "fair", "poor"); ``duration_s`` if the session times the call;
- ``calendar``: ``next`` (or ``events``), a list of {``summary`` (or ``title``), ``start``,
  ``end``} with times as ISO 8601 strings, datetimes or epoch seconds;
- ``room``: ``name``, ``language`` ("en" or "zh");
- ``provisioning`` (the agent's status): ``user_code`` (or ``activation_code``),
  ``verification_uri`` (or ``verification_url``), ``serial`` (the box identity's; else the
  board's);
- ``network``: ``online`` (bool), ``interface``, ``address``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from terminal.screen.i18n import LANGUAGES, text

UPCOMING_NOTICE_S = 10 * 60   # the meetings issue's "upcoming" window: join is offered then
MAX_LISTED_MEETINGS = 3
SCREENS = ("booting", "unprovisioned", "idle", "joining", "in_call", "leaving", "degraded", "technician")
KNOWN_PROBLEMS = ("camera", "microphone", "speaker", "buttons", "leds", "network", "service")
# Thresholds for the network-quality bars, from round-trip time and packet loss: below
# 150 ms and 1 % a call feels local; past 400 ms or 5 % people talk over each other.
GOOD_RTT_MS, POOR_RTT_MS = 150, 400
GOOD_LOSS_PCT, POOR_LOSS_PCT = 1.0, 5.0


@dataclass(frozen=True)
class Meeting:
    title: str
    start: dt.datetime
    end: dt.datetime | None = None


@dataclass(frozen=True)
class HealthLine:
    label: str
    value: str
    is_ok: bool = True


@dataclass(frozen=True)
class ScreenModel:
    """Everything one frame of the room screen needs, already in the room's language."""

    screen: str
    language: str
    room_name: str
    now: dt.datetime
    can_join: bool = True
    has_calendar: bool = False
    meetings: tuple[Meeting, ...] = ()
    upcoming: Meeting | None = None
    activation_code: str = ""
    verification_url: str = ""
    serial: str = ""
    is_online: bool | None = None
    network_text: str = ""
    meeting_title: str = ""
    is_muted: bool = False
    call_duration_s: float | None = None
    quality: str = "unknown"
    layout: str = "auto"
    problem: str = ""
    advice: str = ""
    detail: str = ""
    health: tuple[HealthLine, ...] = ()
    notice: str = ""

    def t(self, key: str, **values: object) -> str:
        return text(self.language, key, **values)


def build(status: dict[str, Any], now: dt.datetime, *, language: str = "en", layout: str = "auto",
          technician: bool = False, call_duration_s: float | None = None) -> ScreenModel:
    """The model for ``status`` at local time ``now`` (timezone-aware).

    ``layout`` is the in-call layout ("auto", "grid" or "speaker"); ``technician`` selects
    the health view over any state; ``call_duration_s`` is used when the status carries no
    call duration (the renderer times the call from its start)."""
    room = status.get("room") or {}
    language = room.get("language") or language
    if language not in LANGUAGES:
        language = "en"
    state = str(status.get("state", "booting"))
    screen = "technician" if technician else (state if state in SCREENS else "degraded")
    meetings = _meetings(_calendar_list(status.get("calendar") or {}), now)
    upcoming = _announced(status.get("upcoming"), now) or _upcoming(meetings, now)
    session = status.get("call_session") or {}
    provisioning = status.get("provisioning") or {}
    network = status.get("network") or {}
    board = status.get("board") or {}
    problem, advice, detail = _problem(status, language)
    notices = status.get("notices") or []
    return ScreenModel(
        screen=screen, language=language,
        room_name=str(room.get("name") or text(language, "room_fallback")),
        now=now, can_join=_can_join(status), has_calendar=bool(status.get("calendar")),
        meetings=meetings[:MAX_LISTED_MEETINGS], upcoming=upcoming,
        activation_code=str(provisioning.get("activation_code") or provisioning.get("user_code") or ""),
        verification_url=str(provisioning.get("verification_url") or provisioning.get("verification_uri") or ""),
        serial=str(provisioning.get("serial") or board.get("serial") or ""),
        is_online=network.get("online"), network_text=_network_text(network, language),
        meeting_title=upcoming.title if upcoming is not None else "",
        is_muted=bool(status.get("muted")),
        call_duration_s=session.get("duration_s", call_duration_s),
        quality=_quality(session), layout=layout,
        problem=problem, advice=advice, detail=detail,
        health=_health(status, language) if technician else (),
        notice=str(notices[-1]) if notices else "",
    )


def _time(value: Any, tz: dt.tzinfo | None) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, (int, float)):
        moment = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(tz)


def _can_join(status: dict[str, Any]) -> bool:
    """Whether the join button has a meeting to join: the calendar's current one or the
    room's standing one (the state machine's ``calendar_meeting`` and ``meeting``)."""
    if "meeting" not in status and "calendar_meeting" not in status:
        return True              # a status without them: do not claim the button is dead
    return bool(status.get("meeting") or status.get("calendar_meeting"))


def _calendar_list(calendar: dict[str, Any]) -> list[Any]:
    # "next" is the calendar poller's list of coming meetings; "events" may be that list
    # or, in the poller's own status, only a count.
    for key in ("next", "events"):
        if isinstance(calendar.get(key), list):
            return calendar[key]
    return []


def _announced(upcoming: Any, now: dt.datetime) -> Meeting | None:
    """The state machine's upcoming meeting (the one a press joins), if it has one."""
    if not isinstance(upcoming, dict):
        return None
    start = _time(upcoming.get("start"), now.tzinfo)
    if start is None:
        return None
    title = str(upcoming.get("summary") or upcoming.get("title") or "").strip() or "Meeting"
    return Meeting(title, start, _time(upcoming.get("end"), now.tzinfo))


def _meetings(events: Any, now: dt.datetime) -> tuple[Meeting, ...]:
    """Today's meetings not yet over, soonest first; entries without a start are skipped."""
    found = []
    for event in events:
        if not isinstance(event, dict):
            continue
        start = _time(event.get("start"), now.tzinfo)
        end = _time(event.get("end"), now.tzinfo)
        if start is None or (end or start) < now or start.date() != now.date():
            continue
        title = str(event.get("title") or event.get("summary") or "").strip() or "Meeting"
        found.append(Meeting(title, start, end))
    return tuple(sorted(found, key=lambda m: m.start))


def _upcoming(meetings: tuple[Meeting, ...], now: dt.datetime) -> Meeting | None:
    for meeting in meetings:
        if (meeting.start - now).total_seconds() <= UPCOMING_NOTICE_S:
            return meeting
    return None


def _quality(session: dict[str, Any]) -> str:
    quality = session.get("quality")
    if quality in ("good", "fair", "poor"):
        return quality
    rtt, loss = session.get("rtt_ms"), session.get("loss")
    if rtt is None and loss is None:
        return "unknown"
    rtt, loss = rtt or 0.0, (loss or 0.0) * 100
    if rtt > POOR_RTT_MS or loss > POOR_LOSS_PCT:
        return "poor"
    if rtt > GOOD_RTT_MS or loss > GOOD_LOSS_PCT:
        return "fair"
    return "good"


def _network_text(network: dict[str, Any], language: str) -> str:
    online = network.get("online")
    if online is None:
        return ""
    words = text(language, "online" if online else "offline")
    where = ", ".join(str(network[k]) for k in ("interface", "address") if network.get(k))
    return f"{words} ({where})" if where else words


def _problem(status: dict[str, Any], language: str) -> tuple[str, str, str]:
    """Plain words for what is wrong and what to do, plus the technical reason as detail."""
    if str(status.get("state")) != "degraded":
        return "", "", ""
    lost = status.get("lost_devices") or {}
    reason = str(status.get("reason") or "")
    kind = next(iter(lost), None) or reason.split(":", 1)[0].strip()
    kind = kind if kind in KNOWN_PROBLEMS else "other"
    detail = f"{next(iter(lost))}: {lost[next(iter(lost))]}" if lost else reason
    return text(language, f"problem_{kind}"), text(language, f"advice_{kind}"), detail


def _health(status: dict[str, Any], language: str) -> tuple[HealthLine, ...]:
    board = status.get("board") or {}
    lost = status.get("lost_devices") or {}
    lines = [HealthLine(text(language, "state"), f"{status.get('state', '?')} ({status.get('reason', '')})",
                        str(status.get("state")) != "degraded"),
             HealthLine(text(language, "profile"), str(status.get("profile", "?"))),
             HealthLine(text(language, "uptime"), format_duration(float(status.get("uptime_s") or 0)))]
    if board.get("serial"):
        lines.append(HealthLine(text(language, "serial"), str(board["serial"])))
    if board.get("cpu_temp_c") is not None:
        temp = float(board["cpu_temp_c"])
        lines.append(HealthLine(text(language, "temperature"), f"{temp:.0f} °C", temp < 80))
    throttling = board.get("throttling") or {}
    if throttling:
        low = bool(throttling.get("under_voltage"))
        lines.append(HealthLine(text(language, "power"), text(language, "power_low" if low else "power_ok"), not low))
    memory = board.get("memory") or {}
    if memory.get("available_bytes") is not None:
        lines.append(HealthLine(text(language, "memory_free"), _size(memory["available_bytes"]),
                                memory["available_bytes"] > 100e6))
    disk = board.get("disk") or {}
    if disk.get("free_bytes") is not None:
        lines.append(HealthLine(text(language, "disk_free"), _size(disk["free_bytes"]), disk["free_bytes"] > 500e6))
    network = _network_text(status.get("network") or {}, language)
    if network:
        lines.append(HealthLine(text(language, "network"), network, bool((status.get("network") or {}).get("online"))))
    devices = "; ".join(f"{k}: {v}" for k, v in lost.items()) or text(language, "all_working")
    lines.append(HealthLine(text(language, "devices"), devices, not lost))
    return tuple(lines)


def format_duration(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _size(count: float) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


