"""WHIP publishing (RFC 9725): our camera and microphone to a WHIP endpoint.

One HTTP POST carries our SDP offer (``application/sdp``, with every ICE candidate: aiortc
gathers before it offers, so no trickle PATCH is needed); ``201 Created`` carries the answer
and, in ``Location``, the session URL that a DELETE ends. WHIP is publish-only: nobody to
subscribe to. A bearer token comes from ``?token=`` in the meeting URL. 4xx answers mean the
meeting is wrong (no retry); 5xx, network errors and ICE failure mean the service is lost.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
from aiortc import RTCSessionDescription

from terminal.conference import (CallHooks, Conference, ConferenceLost, MeetingRejected,
                                 MeetingUrl, wait_connected)

log = logging.getLogger("roombox.terminal.conference")

HTTP_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 15.0
MAX_ANSWER_BYTES = 256 * 1024


class WhipPublisher(Conference):
    """The WHIP adapter; ``session_url`` is set while published."""

    def __init__(self, meeting: MeetingUrl, verify_tls: bool | str = True) -> None:
        super().__init__(meeting)
        self.verify_tls = verify_tls
        self.endpoint = meeting.endpoint + (f"?{urlencode(meeting.extra)}" if meeting.extra else "")
        self.session_url: str | None = None
        self._lost = asyncio.Event()

    def _headers(self, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if self.meeting.token:
            headers["Authorization"] = f"Bearer {self.meeting.token}"
        return headers

    async def run(self, hooks: CallHooks) -> None:
        pc = hooks.new_peer_connection()

        @pc.on("connectionstatechange")
        def changed() -> None:
            if pc.connectionState == "failed":
                self._lost.set()

        hooks.add_local_media(pc)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self._post_offer(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        hooks.check_local_media(pc)
        await wait_connected(pc, "whip: publishing", CONNECT_TIMEOUT_S)
        hooks.published()
        await self._lost.wait()
        raise ConferenceLost("whip: ICE/DTLS to the endpoint failed (consent lost)")

    async def _post_offer(self, offer_sdp: str) -> str:
        try:
            async with httpx.AsyncClient(verify=self.verify_tls, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
                response = await client.post(self.endpoint, content=offer_sdp.encode(),
                                             headers=self._headers(**{"Content-Type": "application/sdp"}))
        except httpx.HTTPError as exc:
            raise ConferenceLost(f"whip: POST to {self.meeting.redacted()} failed ({type(exc).__name__}: {exc})") from None
        where = self.meeting.redacted()
        if 400 <= response.status_code < 500:
            raise MeetingRejected(f"whip: {where} refused our offer with HTTP {response.status_code} "
                                  f"({response.text[:120].strip() or 'no reason given'})")
        if response.status_code != 201:
            raise ConferenceLost(f"whip: {where} answered HTTP {response.status_code}; expected 201 Created")
        location = response.headers.get("location")
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not location or kind != "application/sdp" or len(response.content) > MAX_ANSWER_BYTES:
            raise ConferenceLost(f"whip: {where} answered 201 without a Location and an application/sdp "
                                 f"answer (content-type {kind!r})")
        self.session_url = urljoin(self.endpoint, location)
        return response.text

    async def close(self) -> None:
        """DELETE the WHIP session (bounded; a server that is gone is not an error here)."""
        url, self.session_url = self.session_url, None
        if url is None:
            return
        try:
            async with httpx.AsyncClient(verify=self.verify_tls, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
                await client.delete(url, headers=self._headers())
        except httpx.HTTPError as exc:
            log.info("conference: whip session not deleted (%s)", exc)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "adapter": "whip", "published": self.session_url is not None}
