"""Janus's HTTP API (https://janus.conf.meetecho.com/docs/rest.html): one session, its
plugin handles, keepalives and the long poll that carries asynchronous events.

Everything the server sends is checked before use: a message that is not the shape the
protocol defines is logged and dropped (counted in ``status()``), never allowed to raise
inside the call. Losing the server (refused, timed out, session gone) raises ConferenceLost.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from typing import Any

import httpx

from terminal.conference import ConferenceLost, MeetingRejected

log = logging.getLogger("roombox.terminal.conference")

HTTP_TIMEOUT_S = 5.0
LONG_POLL_S = 40.0          # Janus answers an idle long poll after 30 s with a keepalive
KEEPALIVE_S = 10.0          # within Janus's 60 s session_timeout; also how soon a silent server is noticed
REQUEST_TIMEOUT_S = 10.0    # an asynchronous plugin request's event
MAX_EVENTS_PER_POLL = 10
HANDLE_EVENTS_KEPT = 100
KNOWN_TYPES = {"event", "webrtcup", "media", "slowlink", "hangup", "detached", "timeout",
               "keepalive", "ack", "success", "error", "trickle"}
SESSION_GONE = 458          # JANUS_ERROR_SESSION_NOT_FOUND
HANDLE_GONE = 459           # JANUS_ERROR_HANDLE_NOT_FOUND
# VideoRoom errors that no retry will fix: no such room, unauthorized (PIN), no such feed.
FATAL_PLUGIN_ERRORS = {426: "no such room", 433: "unauthorized (wrong or missing PIN)",
                       428: "no such feed"}


class PluginError(ConferenceLost):
    """A plugin request failed with a code worth retrying."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class JanusApi:
    """One Janus session over HTTP(S). ``create()``, then ``attach()`` handles and send them
    ``message()``s; ``poll()`` must run (as a task) for asynchronous replies and events to
    arrive. ``events(handle)`` is that handle's queue of checked events. TLS is verified."""

    def __init__(self, endpoint: str, verify_tls: bool | str = True) -> None:
        self.endpoint = endpoint
        self._client = httpx.AsyncClient(verify=verify_tls, timeout=HTTP_TIMEOUT_S, trust_env=False)
        self.session_id: int | None = None
        self._queues: dict[int, asyncio.Queue] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self.messages_dropped = 0
        self.events_received = 0

    async def create(self) -> int:
        reply = await self._post(self.endpoint, {"janus": "create"})
        self.session_id = _int(reply.get("data", {}), "id")
        return self.session_id

    async def attach(self, plugin: str) -> int:
        reply = await self._post(self._session_url(), {"janus": "attach", "plugin": plugin})
        handle = _int(reply.get("data", {}), "id")
        self._queues[handle] = asyncio.Queue(HANDLE_EVENTS_KEPT)
        return handle

    def events(self, handle: int) -> asyncio.Queue:
        """Checked events for ``handle`` (dicts with a string ``janus`` type)."""
        return self._queues[handle]

    async def message(self, handle: int, body: dict, jsep: dict | None = None,
                      timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[dict, dict | None]:
        """A plugin request; returns (plugin data, jsep or None). Synchronous requests answer
        at once; asynchronous ones answer with an event carrying our transaction."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        transaction = self._transaction()
        waiter = asyncio.get_running_loop().create_future()
        self._pending[transaction] = waiter
        try:
            reply = await self._post(self._handle_url(handle), request, transaction)
            if reply.get("janus") == "ack":
                async with asyncio.timeout(timeout_s):
                    reply = await waiter
        except TimeoutError:
            raise ConferenceLost(f"janus: no answer to {body.get('request')!r} within {timeout_s} s") from None
        finally:
            self._pending.pop(transaction, None)
        data = reply.get("plugindata", {}).get("data")
        if not isinstance(data, dict):
            raise ConferenceLost(f"janus: {body.get('request')!r} answered without plugin data")
        if "error" in data or "error_code" in data:
            code = data.get("error_code")
            reason = f"janus: {body.get('request')!r} failed: {data.get('error')} (code {code})"
            if code in FATAL_PLUGIN_ERRORS:
                raise MeetingRejected(f"{reason}: {FATAL_PLUGIN_ERRORS[code]}")
            raise PluginError(reason, code)
        jsep_out = reply.get("jsep")
        return data, jsep_out if isinstance(jsep_out, dict) else None

    async def trickle_completed(self, handle: int) -> None:
        await self._post(self._handle_url(handle), {"janus": "trickle", "candidate": {"completed": True}})

    async def detach(self, handle: int) -> None:
        self._queues.pop(handle, None)
        await self._post(self._handle_url(handle), {"janus": "detach"})

    async def poll(self) -> None:
        """Long-poll events and send keepalives until cancelled; raises ConferenceLost."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keepalive())
            while True:
                try:
                    response = await self._client.get(
                        self._session_url(), params={"maxev": MAX_EVENTS_PER_POLL, "rid": self._transaction()},
                        timeout=LONG_POLL_S)
                    payload = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    raise ConferenceLost(f"janus: long poll to {self.endpoint} failed ({_why(exc)})") from None
                for event in payload if isinstance(payload, list) else [payload]:
                    self._dispatch(event)

    async def close(self) -> int | None:
        """Destroy the session (best effort, bounded) and close the HTTP client. Returns the
        id of a session that could not be destroyed (the caller may retry later), else None."""
        left = None
        try:
            if self.session_id is not None:
                async with asyncio.timeout(HTTP_TIMEOUT_S):
                    await self._post(self._session_url(), {"janus": "destroy"})
        except (ConferenceLost, MeetingRejected, TimeoutError) as exc:
            log.info("conference: janus session not destroyed (%s)", exc)
            left = self.session_id
        finally:
            self.session_id = None
            await self._client.aclose()
        return left

    async def destroy_stale(self, session_id: int) -> None:
        """Destroy a session of ours that outlived a lost connection (best effort): until
        Janus times it out, others would see our old, silent feed."""
        try:
            async with asyncio.timeout(HTTP_TIMEOUT_S):
                await self._post(f"{self.endpoint}/{session_id}", {"janus": "destroy"})
            log.info("conference: destroyed our stale janus session %s", session_id)
        except (ConferenceLost, MeetingRejected, TimeoutError) as exc:
            log.info("conference: stale janus session %s already gone (%s)", session_id, exc)

    def _dispatch(self, event: Any) -> None:
        if not _is_valid(event):
            self.messages_dropped += 1
            log.warning("conference: dropping malformed janus message %.200r", event)
            return
        kind = event["janus"]
        self.events_received += 1
        if kind == "keepalive":
            return
        if kind == "timeout":
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(ConferenceLost("janus: session timed out"))
            raise ConferenceLost("janus: the server expired our session")
        waiter = self._pending.get(event.get("transaction", ""))
        if waiter is not None and not waiter.done() and kind in ("event", "success", "error"):
            waiter.set_result(event)
            return
        queue = self._queues.get(event.get("sender"))
        if queue is not None:
            if queue.full():
                # Nobody reads this handle's events (subscriptions: webrtcup, media,
                # slowlink): keep the newest rather than grow for the length of the call.
                queue.get_nowait()
            queue.put_nowait(event)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            await self._post(self._session_url(), {"janus": "keepalive"})

    async def _post(self, url: str, body: dict, transaction: str | None = None) -> dict:
        body = dict(body, transaction=transaction or self._transaction())
        return self._checked_reply(body, await self._send(url, body))

    async def _send(self, url: str, body: dict) -> Any:
        """The transport: one request, its immediate reply (ack, success or error)."""
        try:
            response = await self._client.post(url, json=body)
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ConferenceLost(f"janus: {body['janus']} to {self.endpoint} failed ({_why(exc)})") from None

    def _checked_reply(self, body: dict, reply: Any) -> dict:
        if not isinstance(reply, dict) or not isinstance(reply.get("janus"), str):
            self.messages_dropped += 1
            raise ConferenceLost(f"janus: {body['janus']} got a malformed reply {reply!r:.200}")
        if reply["janus"] == "error":
            error = reply.get("error") if isinstance(reply.get("error"), dict) else {}
            code, reason = error.get("code"), error.get("reason", "?")
            if code in (SESSION_GONE, HANDLE_GONE):
                raise ConferenceLost(f"janus: session lost ({reason})")
            raise PluginError(f"janus: {body['janus']} failed: {reason} (code {code})", code)
        return reply

    def _transaction(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _session_url(self) -> str:
        if self.session_id is None:
            raise ConferenceLost("janus: no session")
        return f"{self.endpoint}/{self.session_id}"

    def _handle_url(self, handle: int) -> str:
        return f"{self._session_url()}/{handle}"

    def status(self) -> dict[str, Any]:
        return {"session": self.session_id, "handles": len(self._queues),
                "events": self.events_received, "dropped_messages": self.messages_dropped}


def _is_valid(event: Any) -> bool:
    if not isinstance(event, dict) or event.get("janus") not in KNOWN_TYPES:
        return False
    if "sender" in event and not isinstance(event["sender"], int):
        return False
    if "transaction" in event and not isinstance(event["transaction"], str):
        return False
    if "plugindata" in event:
        plugindata = event["plugindata"]
        if not isinstance(plugindata, dict) or not isinstance(plugindata.get("data"), dict):
            return False
    if "jsep" in event:
        jsep = event["jsep"]
        if not (isinstance(jsep, dict) and jsep.get("type") in ("offer", "answer")
                and isinstance(jsep.get("sdp"), str)):
            return False
    return True


def _int(data: Any, key: str) -> int:
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConferenceLost(f"janus: expected an integer {key!r} in the reply, got {value!r:.80}")
    return value


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
