"""Diagnostics bundle for support tickets: our journal entries, the effective configuration
with secrets masked, health, versions and recent call statistics, in one tar.gz.

Built by ``roombox diag bundle`` and by the provisioning command "collect diagnostics".
Holds no media and no meeting content; serials and host names are kept (support needs them).
"""
from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import platform
import re
import tarfile
import tempfile
import time
from datetime import datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

JOURNAL_HOURS = 24
JOURNAL_MAX_ENTRIES = 20000
MASK = "********"
SECRET_KEY = re.compile(r"(pass(word)?|secret|token|credential|private|pin|api[_-]?key|^key$)", re.I)
PACKAGES = ("roombox", "av", "aiortc", "aioice", "numpy", "gpiozero", "pyalsaaudio", "systemd-python",
            "picamera2", "lgpio", "fastapi", "sqlalchemy", "cryptography")


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secret-looking keys, URL passwords and ``pin=`` query
    parameters replaced by MASK."""
    if isinstance(value, dict):
        return {k: (MASK if SECRET_KEY.search(str(k)) and v not in (None, "") else mask_secrets(v, str(k)))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v, key) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
    query = urlencode([(k, MASK if SECRET_KEY.search(k) else v) for k, v in parse_qsl(parts.query)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def versions() -> dict[str, Any]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    os_release = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                os_release[k] = v.strip('"')
    except OSError:
        pass
    return {"packages": found, "python": platform.python_version(), "kernel": platform.release(),
            "machine": platform.machine(), "os": os_release.get("PRETTY_NAME")}


def journal_entries(hours: int = JOURNAL_HOURS, limit: int = JOURNAL_MAX_ENTRIES) -> tuple[list[dict], str]:
    """Our journal entries (unit roombox*.service or identifier roombox); a note when none."""
    try:
        from systemd import journal
        reader = journal.Reader()
    except (ImportError, OSError) as exc:
        return [], f"journal not readable here ({exc})"
    entries = []
    try:
        reader.seek_realtime(datetime.now(timezone.utc) - timedelta(hours=hours))
        for entry in reader:
            unit = str(entry.get("_SYSTEMD_UNIT", ""))
            if not (unit.startswith("roombox") or entry.get("SYSLOG_IDENTIFIER") == "roombox"):
                continue
            entries.append({k: str(v) for k, v in entry.items() if not k.startswith("__")})
            if len(entries) >= limit:
                break
    finally:
        reader.close()
    return entries, "" if entries else "no roombox entries in the journal (not run under systemd yet?)"


def build_bundle(out: Path, *, profile: Any, running: dict | None, health: list[dict],
                 provisioned_config: dict | None = None) -> Path:
    """Write the tarball to ``out`` atomically, mode 0600. Returns ``out``."""
    entries, journal_note = journal_entries()
    config = {"hardware_profile": dataclasses.asdict(profile) if dataclasses.is_dataclass(profile) else profile,
              "provisioned": provisioned_config,
              "environment": {k: v for k, v in os.environ.items() if k.startswith("ROOMBOX_")}}
    call = (running or {}).get("call_session")
    files = {
        "README.txt": (f"roombox diagnostics, {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
                       "journal.jsonl: our log entries; config.json: effective configuration, secrets masked;\n"
                       "health.json: health findings; status.json: the running terminal's status;\n"
                       "calls.json: statistics of the current/last call; versions.json.\n"
                       + (f"note: {journal_note}\n" if journal_note else "")),
        "journal.jsonl": "".join(json.dumps(e) + "\n" for e in entries),
        "config.json": json.dumps(mask_secrets(config), indent=2, default=str),
        "health.json": json.dumps(mask_secrets(health), indent=2, default=str),
        "status.json": json.dumps(mask_secrets(running), indent=2, default=str),
        "calls.json": json.dumps(mask_secrets({"current_or_last": call}), indent=2, default=str),
        "versions.json": json.dumps(versions(), indent=2),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                stamp = time.time()
                prefix = out.name.removesuffix(".tar.gz")
                for name, text in files.items():
                    data = text.encode()
                    info = tarfile.TarInfo(f"{prefix}/{name}")
                    info.size, info.mtime, info.mode = len(data), stamp, 0o600
                    tar.addfile(info, io.BytesIO(data))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


async def build_bundle_async(out: Path, **kwargs: Any) -> Path:
    """``build_bundle`` off the event loop (journal reading and compression block)."""
    return await asyncio.to_thread(build_bundle, out, **kwargs)
