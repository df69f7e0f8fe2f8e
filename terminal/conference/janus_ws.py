"""Janus's WebSocket API (subprotocol ``janus-protocol``): the same requests as the HTTP
API, with session and handle ids in the message instead of the URL, and events pushed on
the one socket instead of long-polled. Only the transport differs from ``JanusApi``:
``_send`` writes a request and awaits its immediate reply; ``poll`` reads the socket."""
from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp

from terminal.conference import ConferenceLost
from terminal.conference import janus_api
from terminal.conference.janus_api import JanusApi

SUBPROTOCOL = "janus-protocol"
CONNECT_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 1024 * 1024
REPLY_TYPES = ("ack", "success", "error")


class JanusWebSocketApi(JanusApi):
    """One Janus session over a WebSocket (``ws://`` or TLS-verified ``wss://``)."""

    def __init__(self, endpoint: str, verify_tls: bool | str = True) -> None:
        super().__init__(endpoint, verify_tls)
        self._verify_tls = verify_tls
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._replies: dict[str, asyncio.Future] = {}
        self._reads_inline = False       # no poll() running: create() and close() read themselves

    async def create(self) -> int:
        await self._client.aclose()      # the HTTP client of the base class is not used
        self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                self._ws = await self._http.ws_connect(self.endpoint, protocols=(SUBPROTOCOL,),
                                                       ssl=self._ssl(), max_msg_size=MAX_MESSAGE_BYTES)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._http.close()
            raise ConferenceLost(f"janus: cannot open {self.endpoint} ({type(exc).__name__}: {exc})") from None
        self._reads_inline = True
        try:
            return await super().create()
        finally:
            self._reads_inline = False

    def _ssl(self) -> Any:
        if self._verify_tls is True:
            return True
        if self._verify_tls is False:
            return False
        return ssl.create_default_context(cafile=self._verify_tls)

    async def _send(self, url: str, body: dict) -> Any:
        # The base class addresses sessions and handles by URL path: endpoint/session/handle.
        ids = url[len(self.endpoint):].strip("/").split("/") if url != self.endpoint else []
        for key, value in zip(("session_id", "handle_id"), ids):
            body[key] = int(value)
        reply = asyncio.get_running_loop().create_future()
        self._replies[body["transaction"]] = reply
        try:
            await self._ws.send_str(json.dumps(body))
            async with asyncio.timeout(janus_api.HTTP_TIMEOUT_S):
                if not self._reads_inline:
                    return await reply           # poll() reads the socket
                while not reply.done():
                    self._take(await self._ws.receive())
                return reply.result()
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise ConferenceLost(f"janus: {body['janus']} over {self.endpoint} failed ({exc})") from None
        except TimeoutError:
            raise ConferenceLost(f"janus: no reply to {body['janus']} within {janus_api.HTTP_TIMEOUT_S} s") from None
        finally:
            self._replies.pop(body["transaction"], None)

    async def poll(self) -> None:
        """Read pushed events and send keepalives until cancelled; raises ConferenceLost."""
        self._is_reading = True
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._keepalive())
                while True:
                    self._take(await self._ws.receive())
        finally:
            self._reads_inline = False       # no poll() running: create() and close() read themselves

    def _take(self, message: aiohttp.WSMessage) -> None:
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            raise ConferenceLost(f"janus: {self.endpoint} closed the WebSocket ({message.type.name})")
        if message.type != aiohttp.WSMsgType.TEXT:
            self.messages_dropped += 1
            return
        try:
            data = json.loads(message.data)
        except ValueError:
            self.messages_dropped += 1
            return
        reply = self._replies.get(data.get("transaction", "")) if isinstance(data, dict) else None
        if reply is not None and not reply.done() and data.get("janus") in REPLY_TYPES:
            reply.set_result(data)
        else:
            self._dispatch(data)

    async def close(self) -> int | None:
        """Destroy the session (reading the reply itself: poll() has ended) and close."""
        self._reads_inline = self._ws is not None and not self._ws.closed
        try:
            return await super().close()
        finally:
            if self._ws is not None:
                await self._ws.close()
            if self._http is not None:
                await self._http.close()
