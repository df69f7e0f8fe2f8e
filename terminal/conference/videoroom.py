"""Janus VideoRoom (janus.plugin.videoroom, Janus 1.x multistream API) over HTTP(S).

We join as a publisher with our camera and microphone and subscribe to every other
publisher with one subscriber handle and peer connection each, following ``publishers``,
``unpublished`` and ``leaving`` events as people come and go. A ``moderation: muted`` event
about our audio is a remote mute request. Janus offers to subscribers; we always answer.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from terminal.conference import (CallHooks, Conference, ConferenceLost, Continuity, MeetingUrl,
                                 wait_connected)
from terminal.conference.janus_api import JanusApi, PluginError
from terminal.conference.janus_ws import JanusWebSocketApi

log = logging.getLogger("roombox.terminal.conference")

PLUGIN = "janus.plugin.videoroom"
CONNECT_TIMEOUT_S = 15.0
LEAVE_TIMEOUT_S = 3.0
RESUBSCRIBE_DELAY_S = 1.0


@dataclass
class Subscription:
    feed: int
    display: str
    handle: int
    pc: RTCPeerConnection | None = None


class JanusVideoRoom(Conference):
    """The VideoRoom adapter. One instance per connection attempt; ``status()`` lists who is
    in the room as we see it."""

    def __init__(self, meeting: MeetingUrl, display_name: str, verify_tls: bool | str = True,
                 continuity: Continuity | None = None) -> None:
        super().__init__(meeting)
        self.continuity = continuity or Continuity()
        self.display_name = meeting.display or display_name
        transport = JanusWebSocketApi if meeting.scheme in ("janus+ws", "janus+wss") else JanusApi
        self.api = transport(meeting.endpoint, verify_tls)
        self.publisher_id: int | None = None
        self.private_id: int | None = None
        self.subscriptions: dict[int, Subscription] = {}
        self._hooks: CallHooks | None = None
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._group: asyncio.TaskGroup | None = None
        self._closing = False

    async def run(self, hooks: CallHooks) -> None:
        self._hooks = hooks
        await self.api.create()
        async with asyncio.TaskGroup() as group:
            self._group = group
            group.create_task(self.api.poll(), name="janus-poll")
            group.create_task(self._watch_lost(), name="janus-watch")
            while self.continuity.stale_sessions:
                await self.api.destroy_stale(self.continuity.stale_sessions.pop())
            handle = await self.api.attach(PLUGIN)
            joined, _ = await self.api.message(handle, self._room_request(
                request="join", ptype="publisher", display=self.display_name))
            self.publisher_id = _int_or_none(joined.get("id"))
            if self.publisher_id is not None:
                self.continuity.own_feeds.add(self.publisher_id)
            self.private_id = _int_or_none(joined.get("private_id"))
            # Hearing and seeing the room need not wait for our own media to be accepted.
            for publisher in _publishers(joined):
                group.create_task(self._subscribe(publisher), name="janus-subscribe")
            await self._publish(handle)
            await self._follow(handle)

    async def _publish(self, handle: int) -> None:
        pc = self._hooks.new_peer_connection()
        self._watch_connection(pc, "our published media")
        self._hooks.add_local_media(pc)
        await pc.setLocalDescription(await pc.createOffer())
        _, jsep = await self.api.message(
            handle, {"request": "publish", "display": self.display_name},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp})
        if jsep is None or jsep.get("type") != "answer":
            raise ConferenceLost("janus: publish was accepted without an SDP answer")
        await pc.setRemoteDescription(RTCSessionDescription(jsep["sdp"], "answer"))
        self._hooks.check_local_media(pc)
        await wait_connected(pc, "janus: publishing", CONNECT_TIMEOUT_S)
        self._hooks.published()

    async def _subscribe(self, publisher: dict) -> None:
        feed, display = publisher["id"], publisher["display"]
        if feed in self.subscriptions or feed in self.continuity.own_feeds:
            return
        # Reserved before the first await: an event naming the same feed meanwhile is a no-op.
        self.subscriptions[feed] = Subscription(feed, display, handle=-1)
        try:
            handle = await self.api.attach(PLUGIN)
        except BaseException:
            self.subscriptions.pop(feed, None)
            raise
        self.subscriptions[feed].handle = handle
        try:
            _, offer = await self.api.message(handle, self._room_request(
                request="join", ptype="subscriber", streams=[{"feed": feed}],
                **({"private_id": self.private_id} if self.private_id is not None else {})))
        except PluginError as exc:
            # The feed may have left between the event and our join: not our call's problem.
            log.info("conference: not subscribing to %s (%s)", display, exc)
            self.subscriptions.pop(feed, None)
            await self.api.detach(handle)
            return
        if offer is None or offer.get("type") != "offer":
            log.warning("conference: janus gave no offer for feed %s; skipping it", feed)
            self.subscriptions.pop(feed, None)
            await self.api.detach(handle)
            return
        pc = self._hooks.new_peer_connection()
        self.subscriptions[feed].pc = pc
        self._watch_subscription(pc, feed, display)
        await self._hooks.remote_added(str(feed), display, pc)
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        answer = await pc.createAnswer()
        # Janus is the DTLS client then: it sends its ClientHello once its own ICE is up. As
        # client ourselves, a hello sent before Janus had our answer was lost and cost
        # OpenSSL's 1 s retransmission timer (measured: join p95 1.4 s → see bench/README.md).
        await pc.setLocalDescription(RTCSessionDescription(
            answer.sdp.replace("a=setup:active", "a=setup:passive"), "answer"))
        await self.api.message(handle, {"request": "start"},
                               jsep={"type": "answer", "sdp": pc.localDescription.sdp})
        log.info("conference: subscribed to %s (feed %s)", display, feed)

    def _watch_subscription(self, pc: RTCPeerConnection, feed: int, display: str) -> None:
        """One participant's connection failing (ICE consent lost, DTLS error) costs that
        participant, not the call: subscribe to them again while they are in the room."""
        @pc.on("connectionstatechange")
        def changed() -> None:
            subscription = self.subscriptions.get(feed)
            # "closed" too: when ICE dies aiortc closes the pc itself once DTLS has ended.
            if (pc.connectionState not in ("failed", "closed") or subscription is None
                    or subscription.pc is not pc or self._group is None or self._closing or self._lost.is_set()):
                return
            subscription.pc = None          # once per connection
            resubscribe = self._resubscribe(feed, display)
            try:
                self._group.create_task(resubscribe, name="janus-resubscribe")
            except RuntimeError:            # the call is ending (its task group is shutting down)
                resubscribe.close()
                return
            log.warning("conference: the connection to %s %s; subscribing again", display, pc.connectionState)

    async def _resubscribe(self, feed: int, display: str) -> None:
        await self._unsubscribe(feed, why="connection failed")
        await asyncio.sleep(RESUBSCRIBE_DELAY_S)
        # If they left meanwhile, Janus refuses the join and _subscribe says so.
        await self._subscribe({"id": feed, "display": display})

    async def _unsubscribe(self, feed: int, why: str = "left") -> None:
        subscription = self.subscriptions.pop(feed, None)
        if subscription is None:
            return
        log.info("conference: %s %s (feed %s)", subscription.display, why, feed)
        await self._hooks.remote_removed(str(feed))
        try:
            await self.api.detach(subscription.handle)
        except ConferenceLost as exc:
            log.info("conference: detach of feed %s failed (%s)", feed, exc)

    async def _follow(self, handle: int) -> None:
        """Handle the publisher handle's events until the room or the server goes away."""
        events = self.api.events(handle)
        while True:
            event = await events.get()
            if event["janus"] == "hangup":
                raise ConferenceLost(f"janus: hung up our publisher ({event.get('reason', '?')})")
            data = event.get("plugindata", {}).get("data", {})
            if event["janus"] != "event" or not data:
                continue
            try:
                await self._on_room_event(data)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("conference: dropping bad videoroom event %.200r (%s)", data, exc)

    async def _on_room_event(self, data: dict) -> None:
        if data.get("videoroom") == "destroyed":
            raise ConferenceLost("janus: the room was destroyed")
        for publisher in _publishers(data):
            await self._subscribe(publisher)
        for key in ("unpublished", "leaving", "kicked"):
            feed = data.get(key)
            if feed == "ok" or (key == "kicked" and feed == self.publisher_id):
                if key == "kicked":
                    raise ConferenceLost("janus: we were kicked from the room")
                continue
            if isinstance(feed, int) and not isinstance(feed, bool):
                await self._unsubscribe(feed)
        if data.get("moderation") == "muted" and data.get("id") == self.publisher_id:
            self._hooks.mute_requested(by="room moderator")

    def _room_request(self, **body: Any) -> dict:
        body["room"] = self.meeting.room
        if self.meeting.pin:
            body["pin"] = self.meeting.pin
        return body

    def _watch_connection(self, pc: RTCPeerConnection, what: str) -> None:
        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState == "failed" and not self._lost.is_set():
                self._lost_reason = f"ICE/DTLS for {what} failed"
                self._lost.set()

    async def _watch_lost(self) -> None:
        await self._lost.wait()
        raise ConferenceLost(f"janus: {self._lost_reason}")

    async def close(self) -> None:
        self._closing = True
        async with asyncio.timeout(LEAVE_TIMEOUT_S * 2):
            left = await self.api.close()
        if left is not None:
            self.continuity.stale_sessions.append(left)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "adapter": "janus-videoroom", "our_id": self.publisher_id,
                "remote": {str(s.feed): s.display for s in self.subscriptions.values()},
                **self.api.status()}


def _publishers(data: dict) -> list[dict]:
    """The checked entries of a ``publishers`` list (id int, display str); others dropped."""
    found = []
    for entry in data.get("publishers") or []:
        if (isinstance(entry, dict) and isinstance(entry.get("id"), int)
                and not entry.get("dummy")):
            display = entry.get("display")
            found.append({"id": entry["id"], "display": display if isinstance(display, str) else str(entry["id"])})
        else:
            log.warning("conference: dropping bad publisher entry %.120r", entry)
    return found


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
