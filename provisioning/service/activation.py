"""The activation page the QR code on an unprovisioned box points to.

An IT admin scans the code on the room screen, lands here with the activation code filled
in, picks the room and approves with the admin token. The page is plain HTML with no
script and no cookies: the token travels in the form body over HTTPS, once.
"""
from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from .. import protocol

FIELDS = (("site", "Site", "HQ"), ("room", "Room", "Ada"),
          ("meeting_url", "Meeting URL", "janus+https://meet.example.org/janus?room=1234"),
          ("calendar_url", "Calendar URL (optional)", "https://cal.example.org/ada.ics"))

_STYLE = ("body{font-family:sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}"
          "label{display:block;margin-top:.8rem}input{width:100%;padding:.4rem;font-size:1rem}"
          "button{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem}.err{color:#a00}")


def page(code: str, values: dict | None = None, error: str = "") -> str:
    """The approval form for ``code``; ``values`` refill it after an error."""
    values = values or {}
    rows = "".join(
        f'<label>{label}<input name="{name}" placeholder="{escape(example)}" '
        f'value="{escape(values.get(name, ""))}"></label>' for name, label, example in FIELDS)
    message = f'<p class="err">{escape(error)}</p>' if error else ""
    return (f"<!doctype html><meta charset=utf-8><meta name=viewport "
            f"content='width=device-width'><title>Activate a roombox</title>"
            f"<style>{_STYLE}</style><h1>Activate a roombox</h1>{message}"
            f'<form method="post" action="{protocol.ACTIVATE_PATH}">'
            f'<label>Activation code<input name="code" value="{escape(code)}" '
            f'autocapitalize="characters" required></label>{rows}'
            f'<label>Admin token<input name="token" type="password" required></label>'
            f"<button>Approve</button></form>"
            f"<p>Or from a workstation: <code>roombox admin approve CODE --site SITE "
            f"--room ROOM --meeting-url URL</code></p>")


def done(serial: str, room: str) -> str:
    return (f"<!doctype html><meta charset=utf-8><title>Activated</title><style>{_STYLE}"
            f"</style><h1>Activated</h1><p>Box {escape(serial)} is now set up for "
            f"{escape(room or 'its room')}. It picks up its certificate and configuration "
            f"within a few seconds.</p>")


def parse_form(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as a dict of first values, trimmed."""
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0].strip() for k, v in parsed.items()}
