"""The provisioning agent: find the service, enrol, then check in and apply what it sends.

The agent decides nothing about the room. It reports to the terminal through ``events``
(an ``asyncio.Queue`` of ``AgentEvent``) and asks it two things through callbacks:

``health_check(settings) -> (ok, reason)``  awaited while a new config is on trial; the
    terminal applies the trial settings (it got ``config_received``) and says whether the
    box is healthy with them (conferencing service reachable, peripherals present).
``is_in_call() -> bool``  disruptive commands (reboot, rejoin, selftest) wait while True.

Event kinds and their ``data``:

=======================  ===================================================================
``activation_code``      user_code, verification_uri, verification_uri_complete, expires_in
``enrolled``             serial, service_url
``enrolment_rejected``   reason
``enrolment_revoked``    reason: the admin removed the box; it re-enrols with a new key
``config_received``      version, settings (``schema.Settings``): now on trial
``config_committed``     version, settings: the new last-known-good
``config_rolled_back``   version, reason, settings (what runs now)
``config_refused``       reason (signature, expiry, version, schema...; nothing changed)
``command_received``     id, kind, args: verified, not expired, not replayed; the terminal
                         runs it and calls ``report_result(id, status, detail)``
``command_refused``      reason
``service_unreachable``  reason (check-in failed; the agent retries with backoff)
=======================  ===================================================================
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .. import protocol
from ..errors import (CommandRejected, ConfigRejected, EnrolmentError, EnrolmentRevoked,
                      ProvisioningError, ServiceError)
from ..schema import SAFE_SETTINGS, Settings
from .commands import CommandGate
from .config_store import ConfigStore
from .discovery import ServiceLocation, fetch_pinned_ca
from .identity import DeviceIdentity

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_S = 15
HEALTH_TIMEOUT_S = 60
RETRY_BASE_S = 5
RETRY_MAX_S = 300


@dataclass(frozen=True)
class AgentEvent:
    kind: str
    data: dict = field(default_factory=dict)


HealthCheck = Callable[[Settings], Awaitable[tuple[bool, str]]]


class ProvisioningAgent:
    """Owns one box's provisioning; ``run()`` is its long-lived task.

    File writes (fsync on an SD card can take tens of milliseconds) run in a worker thread;
    the agent is their only writer, so they need no lock.
    """

    def __init__(self, state_dir: Path, serial: str, events: asyncio.Queue,
                 health_check: HealthCheck, is_in_call: Callable[[], bool],
                 locate: Callable[[], ServiceLocation], hardware_profile: str = "",
                 health_summary: Callable[[], dict] = dict, clock=time.time,
                 retry_base_s: float = RETRY_BASE_S):
        self.identity = DeviceIdentity(state_dir, serial)
        self.events = events
        self._health_check = health_check
        self._is_in_call = is_in_call
        self._locate = locate
        self._profile = hardware_profile
        self._health_summary = health_summary
        self._clock = clock
        self._retry_base_s = retry_base_s
        self._url: str | None = None
        self._results: list[dict] = []
        self.store: ConfigStore | None = None
        self.gate: CommandGate | None = None
        self.state = "starting"
        self.last_error = ""
        self.last_checkin: float | None = None
        self.user_code: str | None = None
        self.verification_uri: str | None = None
        self._wake = asyncio.Event()
        if self.identity.is_enrolled:
            self._open_stores()

    # --- the long-lived task ---------------------------------------------------------------
    async def run(self) -> None:
        """Enrol if needed, then check in forever at the interval the service asks for.

        Failures never end the task: an unreachable service, a CA that does not match the
        pin or a rejection are reported as events and retried with capped backoff (an admin
        may fix the seed or reset the box meanwhile). A box the admin removed drops its
        certificate, makes a new key and enrols again; its committed config keeps running.
        """
        while True:
            await self._enrol_until_accepted()
            try:
                await self._check_in_forever()
            except EnrolmentRevoked as exc:
                self.last_error = str(exc)
                await self._post("enrolment_revoked", reason=str(exc))
                await asyncio.to_thread(self.identity.forget_certificate)
                self.store = self.gate = None

    async def _enrol_until_accepted(self) -> None:
        failures = 0
        while not self.identity.is_enrolled:
            try:
                await self.enrol()
            except (httpx.HTTPError, ProvisioningError) as exc:
                failures += 1
                self.last_error = str(exc)
                if not isinstance(exc, EnrolmentError):
                    await self._post("service_unreachable", reason=str(exc))
                await self._pause(self._backoff(failures))

    async def _check_in_forever(self) -> None:
        delay, failures = 0.0, 0
        while True:
            await asyncio.sleep(delay)
            try:
                delay = await self.checkin()
                failures = 0
            except (httpx.HTTPError, ServiceError) as exc:
                failures += 1
                delay = self._backoff(failures)
                self.last_error = str(exc)
                await self._post("service_unreachable", reason=str(exc))
            # Jitter on our side too, so boxes powered on together drift apart.
            delay *= random.uniform(1 - protocol.CHECKIN_JITTER, 1 + protocol.CHECKIN_JITTER)

    def wake(self) -> None:
        """Retry enrolment now (an admin just typed the service's URL) instead of after the
        current backoff."""
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _backoff(self, failures: int) -> float:
        return min(RETRY_MAX_S, self._retry_base_s * 2 ** min(failures - 1, 10)) \
            * random.uniform(0.5, 1.0)

    @property
    def running_settings(self) -> Settings:
        """What the box should run now: the committed config, else the built-in safe one.

        Read it at start-up (before ``run()``); later changes arrive as events.
        """
        return self.store.running if self.store else SAFE_SETTINGS

    def status(self) -> dict:
        return {"state": self.state, "serial": self.identity.serial, "service": self._url,
                "user_code": self.user_code, "verification_uri": self.verification_uri,
                "last_checkin": self.last_checkin,
                "config_version": self.store.version if self.store else 0,
                "last_rollback": self.store.last_rollback if self.store else None,
                "last_error": self.last_error}

    # --- plumbing --------------------------------------------------------------------------
    async def _post(self, event_kind: str, **data) -> None:
        await self.events.put(AgentEvent(event_kind, data))

    def _open_stores(self) -> None:
        key = self.identity.config_key_pem
        self.store = ConfigStore(self.identity.dir, self.identity.serial, key, self._clock)
        self.gate = CommandGate(self.identity.dir, self.identity.serial, key, self._clock)
        saved = self.identity.saved_service()
        self._url = saved["url"] if saved else None
        self.state = "provisioned"

    def _client(self) -> httpx.AsyncClient:
        # A fresh SSL context per client picks up the device certificate once we have it.
        return httpx.AsyncClient(base_url=self._url, verify=self.identity.ssl_context(),
                                 timeout=REQUEST_TIMEOUT_S)

    async def _request(self, client: httpx.AsyncClient, method: str, path: str,
                       body: dict | None = None) -> tuple[int, dict]:
        resp = await client.request(method, path, json=body)
        try:
            data = resp.json()
        except ValueError:
            raise ServiceError(f"{method} {path}: HTTP {resp.status_code}, body not JSON: "
                               f"{resp.text[:200]!r}") from None
        return resp.status_code, data

    # --- enrolment -------------------------------------------------------------------------
    async def enrol(self) -> None:
        """Pin the CA, then enrol by pre-registration, activation code or admin acceptance."""
        self.state = "discovering"
        # Discovery may query DNS or read removable media: off the event loop.
        location = await asyncio.to_thread(self._locate)
        ca_pem = await fetch_pinned_ca(location)
        await asyncio.to_thread(self.identity.save_ca, ca_pem)
        await asyncio.to_thread(self.identity.save_service, location.url, location.ca_sha256)
        self._url = location.url
        self.state = "enrolling"
        csr = self.identity.csr()
        async with self._client() as client:
            while True:
                status, body = await self._request(client, "POST", protocol.ENROL_PATH, {
                    "serial": self.identity.serial, "csr": csr,
                    "hardware_profile": self._profile})
                if status == 200:
                    return await self._enrolled(body)
                if status != 202:
                    return await self._refused(f"enrolment refused: HTTP {status} "
                                               f"{body.get('error')}: {body.get('detail')}")
                if await self._wait_for_approval(client, body):
                    return

    async def _wait_for_approval(self, client: httpx.AsyncClient, grant: dict) -> bool:
        """Poll the token endpoint (RFC 8628); False when the code expired (ask for a new one)."""
        self.state = "awaiting_approval"
        self.user_code = grant["user_code"]
        self.verification_uri = grant["verification_uri_complete"]
        # Warning level on purpose: it needs a person, and must show at the default level.
        log.warning("provisioning: activation code %s for %s; approve it at %s",
                    self.user_code, self.identity.serial, self.verification_uri)
        await self._post("activation_code", **{k: grant[k] for k in (
            "user_code", "verification_uri", "verification_uri_complete", "expires_in")})
        interval = float(grant["interval"])
        while True:
            await asyncio.sleep(interval)
            status, body = await self._request(client, "POST", protocol.TOKEN_PATH,
                                               {"device_code": grant["device_code"]})
            error = body.get("error")
            if status == 200:
                await self._enrolled(body)
                return True
            if error == protocol.PENDING:
                continue
            if error == protocol.SLOW_DOWN:
                interval = float(body.get("interval", interval + protocol.SLOW_DOWN_STEP_S))
                continue
            if error == protocol.EXPIRED:
                return False
            await self._refused(f"enrolment refused: {error}: {body.get('detail')}")

    async def _enrolled(self, body: dict) -> None:
        await asyncio.to_thread(self.identity.save_enrolment, body)
        self.user_code = self.verification_uri = None
        self._open_stores()
        log.info("provisioning: enrolled %s with %s", self.identity.serial, self._url)
        await self._post("enrolled", serial=self.identity.serial, service_url=self._url)

    async def _refused(self, reason: str):
        self.state = "rejected"
        self.last_error = reason
        await self._post("enrolment_rejected", reason=reason)
        raise EnrolmentError(reason)

    # --- check-in --------------------------------------------------------------------------
    async def checkin(self) -> float:
        """One check-in: report health, take config and commands; returns seconds to the next."""
        assert self.store is not None and self.gate is not None, "check-in before enrolment"
        results, self._results = self._results, []
        config_status = {"committed": self.store.version}
        if self.store.last_rollback:
            config_status["rolled_back"] = self.store.last_rollback
        async with self._client() as client:
            try:
                status, body = await self._request(client, "POST", protocol.CHECKIN_PATH, {
                    "health": self._health_summary(), "config_version": self.store.version,
                    "config_status": config_status, "command_results": results})
            except BaseException:
                self._results = results + self._results   # report them next time
                raise
            if status in (401, 403):
                raise EnrolmentRevoked(f"check-in: HTTP {status} {body.get('error')}: "
                                       f"{body.get('detail')}")
            if status != 200:
                self._results = results + self._results
                raise ServiceError(f"check-in: HTTP {status} {body.get('error')}: "
                                   f"{body.get('detail')}")
            self.last_checkin = self._clock()
            desired = int(body.get("desired_config_version") or 0)
            if desired > self.store.version and not self.store.has_failed(desired):
                status, cfg = await self._request(client, "GET", protocol.CONFIG_PATH)
                if status != 200:
                    raise ServiceError(f"config: HTTP {status} {cfg.get('error')}: "
                                       f"{cfg.get('detail')}")
                await self.apply_config(cfg["document"])
        for token in body.get("commands", []):
            await self.handle_command(token)
        return float(body.get("next_checkin_s", protocol.CHECKIN_INTERVAL_S))

    async def apply_config(self, token: str) -> bool:
        """Verify, try, and commit or roll back a signed config; True when committed."""
        try:
            doc = await asyncio.to_thread(self.store.begin_trial, token)
        except ConfigRejected as exc:
            await self._post("config_refused", reason=str(exc))
            return False
        await self._post("config_received", version=doc.version, settings=doc.settings)
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                ok, reason = await self._health_check(doc.settings)
        except TimeoutError:
            ok, reason = False, f"health check gave no answer within {HEALTH_TIMEOUT_S} s"
        if ok:
            await asyncio.to_thread(self.store.commit)
            await self._post("config_committed", version=doc.version, settings=doc.settings)
            return True
        rollback = await asyncio.to_thread(self.store.rollback, reason or "health check failed")
        await self._post("config_rolled_back", version=doc.version, reason=rollback["reason"],
                         settings=self.store.running)
        return False

    async def handle_command(self, token: str) -> None:
        """Verify a command and pass it to the terminal once, unless it must wait for the call."""
        try:
            cmd = self.gate.verify(token)
        except CommandRejected as exc:
            await self._post("command_refused", reason=str(exc))
            return
        if cmd.is_disruptive and self._is_in_call():
            # Not acknowledged, so the service sends it again at the next check-in.
            log.info("provisioning: %s %s deferred until the call ends", cmd.kind, cmd.id)
            return
        await asyncio.to_thread(self.gate.mark_run, cmd)
        await self._post("command_received", id=cmd.id, kind=cmd.kind, args=cmd.args)

    def report_result(self, command_id: str, status: str, detail: str = "") -> None:
        """The terminal ran (or failed to run) a command: the next check-in reports it."""
        if status not in ("done", "failed", "refused"):
            raise ValueError(f"command result status must be done, failed or refused, got {status!r}")
        self._results.append({"id": command_id, "status": status, "detail": detail[:1000]})
