"""Conference adapters: how a call session reaches a meeting, chosen by the meeting URL.

Meetings are URLs:
- ``janus+http://HOST:PORT/janus?room=ROOM&pin=PIN`` (and ``janus+https``): Janus VideoRoom
  over Janus's HTTP API with long polling; we publish and subscribe to every other publisher.
  ``janus+ws://HOST:PORT/?room=ROOM`` (and ``janus+wss``): the same over Janus's WebSocket API.
- ``whip+https://HOST/PATH?token=TOKEN`` (and ``whip+http`` for loopback tests): WHIP
  publishing (RFC 9725); publish-only, nothing to subscribe to.

An adapter is given ``CallHooks`` (implemented by the call session) and ``run()``s until
cancelled; losing the service raises ConferenceLost (the session backs off and rejoins), a
meeting that cannot work as given (wrong PIN, no such room, bad URL) raises MeetingRejected.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

from aiortc import RTCPeerConnection

from terminal.errors import TerminalError

SCHEMES = ("janus+http", "janus+https", "janus+ws", "janus+wss", "whip+http", "whip+https")


class ConferenceError(TerminalError):
    """Root of the conference adapters' errors."""


class ConferenceLost(ConferenceError, ConnectionError):
    """The service went away or the session expired: back off and rejoin."""


class MeetingRejected(ConferenceError, ValueError):
    """The meeting cannot be joined as given (bad URL, wrong PIN, no such room): no retry."""


@dataclass(frozen=True)
class MeetingUrl:
    """A parsed meeting URL: ``scheme`` (e.g. ``janus+http``), the service ``endpoint``
    (the URL with the adapter prefix and query removed), ``room``, ``pin`` and ``token``."""

    text: str
    scheme: str
    endpoint: str
    room: int | str | None = None
    pin: str | None = None
    token: str | None = None
    display: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.scheme.split("+", 1)[0]

    def redacted(self) -> str:
        """The URL for logs and status: PIN and token masked."""
        shown = self.endpoint if self.room is None else f"{self.endpoint}?room={self.room}"
        return f"{self.kind}+{shown}" + (" (pin set)" if self.pin else "")


def parse_meeting_url(text: str) -> MeetingUrl:
    """Parse a meeting URL; raises MeetingRejected naming what is wrong and what is expected."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise MeetingRejected(f"meeting URL {text!r}: scheme must be one of {', '.join(SCHEMES)}, "
                              f"got {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise MeetingRejected(f"meeting URL {text!r}: no host")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    endpoint = urlunsplit((scheme.split("+", 1)[1], parts.netloc, parts.path or "/", "", ""))
    room: int | str | None = query.pop("room", None)
    if scheme.startswith("janus"):
        if not room:
            raise MeetingRejected(f"meeting URL {text!r}: janus needs ?room=ROOM")
        room = int(room) if room.isdigit() else room
    return MeetingUrl(text=text, scheme=scheme, endpoint=endpoint.rstrip("/"), room=room,
                      pin=query.pop("pin", None), token=query.pop("token", None),
                      display=query.pop("display", None), extra=query)


@dataclass
class Continuity:
    """What one connection attempt leaves to the next within a call: Janus sessions that
    could not be destroyed when the service was lost, and the feed ids we published under
    (so a ghost of our own feed is never subscribed to)."""

    stale_sessions: list[int] = field(default_factory=list)
    own_feeds: set[int] = field(default_factory=set)


class CallHooks(Protocol):
    """What an adapter asks of the call session. All on the event loop."""

    def new_peer_connection(self) -> RTCPeerConnection:
        """A fresh peer connection with the configured ICE servers (and none by default)."""

    def add_local_media(self, pc: RTCPeerConnection) -> None:
        """Add our send-only camera (H.264) and microphone (Opus) transceivers."""

    def check_local_media(self, pc: RTCPeerConnection) -> None:
        """After the answer: raise if the service did not accept H.264 for our video."""

    def published(self) -> None:
        """Our media is accepted: the call is up."""

    async def remote_added(self, participant_id: str, display: str, pc: RTCPeerConnection) -> None:
        """A subscription's peer connection exists; awaited before its remote description
        is set, so its tracks are seen (and decoders ready) as they appear."""

    async def remote_removed(self, participant_id: str) -> None:
        """That participant left or stopped publishing: stop its media and close its pc."""

    def mute_requested(self, by: str) -> None:
        """Someone outside the room asked us to mute (only the room can unmute)."""


class Conference(abc.ABC):
    """One connection to one meeting. ``run(hooks)`` joins, publishes, follows the other
    participants and returns only by cancellation or by raising ConferenceLost /
    MeetingRejected. ``close()`` leaves politely (bounded in time)."""

    def __init__(self, meeting: MeetingUrl) -> None:
        self.meeting = meeting

    @abc.abstractmethod
    async def run(self, hooks: CallHooks) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    def status(self) -> dict[str, Any]:
        return {"meeting": self.meeting.redacted()}


def unwrap_group(group: BaseExceptionGroup) -> BaseException:
    """The conference error inside a TaskGroup's exception group (MeetingRejected first),
    or the group itself when it holds something else (a bug: let it propagate)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (MeetingRejected, ConferenceLost, ConferenceError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return group


async def wait_connected(pc: RTCPeerConnection, what: str, timeout_s: float) -> None:
    """Until ``pc`` is connected; ConferenceLost if it fails or takes longer than ``timeout_s``."""
    import asyncio

    if pc.connectionState == "connected":
        return
    done = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            done.set()

    try:
        async with asyncio.timeout(timeout_s):
            await done.wait()
    except TimeoutError:
        raise ConferenceLost(f"{what} did not connect within {timeout_s} s") from None
    if pc.connectionState != "connected":
        raise ConferenceLost(f"{what}: connection {pc.connectionState}")


def open_conference(meeting: MeetingUrl, display_name: str, verify_tls: bool | str = True,
                    continuity: Continuity | None = None) -> Conference:
    """The adapter for ``meeting``'s scheme."""
    if meeting.kind == "janus":
        from terminal.conference.videoroom import JanusVideoRoom
        return JanusVideoRoom(meeting, display_name, verify_tls, continuity)
    from terminal.conference.whip import WhipPublisher
    return WhipPublisher(meeting, verify_tls)
