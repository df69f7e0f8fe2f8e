"""The provisioned settings and the signed documents that carry them.

One schema, used by the service before it signs and by the box before it trusts: unknown
keys are refused, and every message names the key, what was expected and what was found.
"""
from __future__ import annotations

import dataclasses
import hashlib
import zoneinfo
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigRejected

CONFIG_TYP = "roombox-config+jws"
COMMAND_TYP = "roombox-command+jws"
MAX_DOCUMENT_BYTES = 64 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
AUDIO_STAGES = ("aec", "ns", "agc", "beamforming")
COMMAND_KINDS = ("reboot", "rejoin", "identify", "selftest", "collect_diagnostics",
                 "technician_access")
# technician_access opens the box's status page for a code the admin holds: the command
# carries only the code's SHA-256 (of the code upper-cased, without dashes and spaces) and
# how long it is valid, so the code itself never travels to or rests on the box.
TECHNICIAN_MAX_VALID_S = 8 * 3600
# Commands that would interrupt a meeting; the box holds them until it is out of a call.
DISRUPTIVE_COMMANDS = frozenset({"reboot", "rejoin", "selftest"})
# The meeting URL forms the terminal's conference adapters take (terminal/conference):
# Janus VideoRoom over its HTTP or WebSocket API, and WHIP. Listed here, not imported: the
# service never imports the terminal.
MEETING_SCHEMES = ("janus+https", "janus+wss", "whip+https", "janus+http", "janus+ws", "whip+http")


@dataclass(frozen=True)
class TurnServer:
    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""


@dataclass(frozen=True)
class Settings:
    """What a box needs to serve its room. Defaults are the built-in safe config."""
    site: str = ""
    room: str = ""
    meeting_url: str = ""
    calendar_url: str = ""
    hardware_profile: str = ""
    turn_servers: tuple[TurnServer, ...] = ()
    max_send_bitrate_bps: int = 2_500_000
    max_recv_bitrate_bps: int = 6_000_000
    audio_stages: tuple[str, ...] = AUDIO_STAGES
    time_zone: str = "UTC"
    log_level: str = "info"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {
            "turn_servers": [dataclasses.asdict(t) | {"urls": list(t.urls)}
                             for t in self.turn_servers],
            "audio_stages": list(self.audio_stages)}

    def masked(self) -> dict:
        """The settings with TURN credentials hidden, for status and logs."""
        out = self.to_dict()
        for turn in out["turn_servers"]:
            if turn["credential"]:
                turn["credential"] = "***"
        return out


# The configuration a box runs before it has any and falls back to if everything else fails:
# no meeting, so nothing to break; the management link lives outside the config entirely
# (agent state), so no provisioned document can cut the box off from its service.
SAFE_SETTINGS = Settings()


def _reject(key: str, expected: str, value: Any) -> ConfigRejected:
    return ConfigRejected(f"{key} must be {expected}, got {value!r}")


def _url(key: str, value: Any, schemes: tuple[str, ...], allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _reject(key, f"a {'/'.join(schemes)} URL string", value)
    if value == "" and allow_empty:
        return value
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise _reject(key, f"a {' or '.join(schemes)} URL", value)
    return value


def _text(key: str, value: Any, max_len: int = 200) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise _reject(key, f"a string of at most {max_len} characters", value)
    return value


def _int(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _reject(key, f"an integer from {low} to {high}", value)
    return value


def _turn(key: str, value: Any) -> TurnServer:
    if not isinstance(value, dict):
        raise _reject(key, "a table with urls, username, credential", value)
    unknown = set(value) - {"urls", "username", "credential"}
    if unknown:
        raise _reject(f"{key}.{sorted(unknown)[0]}", "one of urls, username, credential "
                      "(unknown key)", value[sorted(unknown)[0]])
    urls = value.get("urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not urls:
        raise _reject(f"{key}.urls", "a non-empty list of turn:/turns: URLs", urls)
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("turn:", "turns:")):
            # stun: is refused on purpose: no public STUN servers (sovereign by default).
            raise _reject(f"{key}.urls", "turn: or turns: URLs", url)
    return TurnServer(tuple(urls), _text(f"{key}.username", value.get("username", "")),
                      _text(f"{key}.credential", value.get("credential", "")))


def parse_settings(data: Any) -> Settings:
    """Check a settings table and build ``Settings``; missing keys take safe defaults.

    Raises ``ConfigRejected`` naming the key, the expected form and the value found.
    """
    if not isinstance(data, dict):
        raise _reject("settings", "a table", data)
    allowed = {f.name for f in dataclasses.fields(Settings)}
    for key in data:
        if key not in allowed:
            raise _reject(f"settings.{key}", f"one of {', '.join(sorted(allowed))} "
                          "(unknown key)", data[key])
    out: dict[str, Any] = {}
    for key in ("site", "room", "hardware_profile"):
        if key in data:
            out[key] = _text(f"settings.{key}", data[key])
    if "meeting_url" in data:
        out["meeting_url"] = _url("settings.meeting_url", data["meeting_url"], MEETING_SCHEMES)
    if "calendar_url" in data:
        out["calendar_url"] = _url("settings.calendar_url", data["calendar_url"], ("https",))
    if "turn_servers" in data:
        turns = data["turn_servers"]
        if not isinstance(turns, list):
            raise _reject("settings.turn_servers", "a list of tables", turns)
        out["turn_servers"] = tuple(_turn(f"settings.turn_servers[{i}]", t)
                                    for i, t in enumerate(turns))
    if "max_send_bitrate_bps" in data:
        out["max_send_bitrate_bps"] = _int("settings.max_send_bitrate_bps",
                                           data["max_send_bitrate_bps"], 64_000, 20_000_000)
    if "max_recv_bitrate_bps" in data:
        out["max_recv_bitrate_bps"] = _int("settings.max_recv_bitrate_bps",
                                           data["max_recv_bitrate_bps"], 64_000, 50_000_000)
    if "audio_stages" in data:
        stages = data["audio_stages"]
        if not isinstance(stages, list) or any(s not in AUDIO_STAGES for s in stages):
            raise _reject("settings.audio_stages", f"a list drawn from {', '.join(AUDIO_STAGES)}",
                          stages)
        out["audio_stages"] = tuple(stages)
    if "time_zone" in data:
        tz = data["time_zone"]
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise _reject("settings.time_zone", "an IANA time zone such as Europe/Berlin",
                          tz) from None
        out["time_zone"] = tz
    if "log_level" in data:
        if data["log_level"] not in LOG_LEVELS:
            raise _reject("settings.log_level", f"one of {', '.join(LOG_LEVELS)}",
                          data["log_level"])
        out["log_level"] = data["log_level"]
    return Settings(**out)


@dataclass(frozen=True)
class ConfigDocument:
    """The verified payload of a signed configuration."""
    serial: str
    version: int
    issued_at: int
    expires_at: int
    settings: Settings


CONFIG_KEYS = {"sub", "ver", "iat", "exp", "settings"}


def parse_config_payload(payload: dict) -> ConfigDocument:
    """Check the envelope of a config payload (``sub``, ``ver``, ``iat``, ``exp``, ``settings``)."""
    for key in payload:
        if key not in CONFIG_KEYS:
            raise _reject(key, f"one of {', '.join(sorted(CONFIG_KEYS))} (unknown key)",
                          payload[key])
    for key in CONFIG_KEYS:
        if key not in payload:
            raise ConfigRejected(f"{key} is required in a config document, got nothing")
    return ConfigDocument(serial=_text("sub", payload["sub"]),
                          version=_int("ver", payload["ver"], 1, 2**53),
                          issued_at=_int("iat", payload["iat"], 0, 2**40),
                          expires_at=_int("exp", payload["exp"], 0, 2**40),
                          settings=parse_settings(payload["settings"]))


@dataclass(frozen=True)
class Command:
    """A verified signed command for this box."""
    id: str
    serial: str
    kind: str
    issued_at: int
    expires_at: int
    args: dict

    @property
    def is_disruptive(self) -> bool:
        return self.kind in DISRUPTIVE_COMMANDS


def parse_command_args(kind: str, args: Any) -> dict:
    """Check a command's arguments: technician_access needs its grant, the others none."""
    if not isinstance(args, dict):
        raise _reject("args", "a table", args)
    expected = {"code_sha256", "valid_s"} if kind == "technician_access" else set()
    for key in args:
        if key not in expected:
            raise _reject(f"args.{key}", f"one of {', '.join(sorted(expected)) or 'nothing'} "
                          f"for {kind} (unknown key)", args[key])
    if kind == "technician_access":
        digest = args.get("code_sha256")
        if not isinstance(digest, str) or len(digest) != 64 or \
                any(c not in "0123456789abcdef" for c in digest):
            raise _reject("args.code_sha256", "64 lowercase hex digits", digest)
        _int("args.valid_s", args.get("valid_s"), 1, TECHNICIAN_MAX_VALID_S)
    return args


def technician_code_digest(code: str) -> str:
    """How a technician code is sent: SHA-256 of it upper-cased, without dashes and spaces."""
    normal = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode()).hexdigest()


def parse_command_payload(payload: dict) -> Command:
    keys = {"jti", "sub", "cmd", "iat", "exp", "args"}
    for key in payload:
        if key not in keys:
            raise _reject(key, f"one of {', '.join(sorted(keys))} (unknown key)", payload[key])
    if payload.get("cmd") not in COMMAND_KINDS:
        raise _reject("cmd", f"one of {', '.join(COMMAND_KINDS)}", payload.get("cmd"))
    args = parse_command_args(payload["cmd"], payload.get("args", {}))
    return Command(id=_text("jti", payload.get("jti"), 64), serial=_text("sub", payload.get("sub")),
                   kind=payload["cmd"], issued_at=_int("iat", payload.get("iat"), 0, 2**40),
                   expires_at=_int("exp", payload.get("exp"), 0, 2**40), args=args)
