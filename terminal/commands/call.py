"""``roombox join [URL] | leave | mute | unmute | status [--json]``: the running terminal,
through its control socket."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from terminal.control import request
from terminal.errors import ControlError


def register(subparsers: argparse._SubParsersAction) -> None:
    commands = {"join": "join the room's meeting (or URL)", "leave": "leave the call",
                "mute": "mute the microphone", "unmute": "unmute the microphone",
                "status": "show the running terminal's state"}
    for name, text in commands.items():
        parser = subparsers.add_parser(name, help=text, description=text)
        if name == "join":
            parser.add_argument("url", nargs="?", default=None,
                                help="meeting URL (default: the calendar's, else the standing meeting)")
        if name == "status":
            parser.add_argument("--json", action="store_true", help="the whole status as JSON")
        parser.add_argument("--socket", default=None, metavar="PATH",
                            help="control socket (default: $ROOMBOX_CONTROL_SOCKET or /run/roombox/control.sock)")
        parser.set_defaults(func=main, command_name=name)


def main(args: argparse.Namespace) -> int:
    message: dict[str, Any] = {"command": args.command_name}
    if getattr(args, "url", None):
        message["url"] = args.url
    try:
        reply = asyncio.run(request(message, args.socket))
    except ControlError as exc:
        print(f"roombox: {exc}", file=sys.stderr)
        return 3
    if not reply.get("ok"):
        print(f"roombox: {reply.get('error', reply)}", file=sys.stderr)
        return 2
    if args.command_name == "status":
        status = reply["status"]
        print(json.dumps(status, indent=2, default=str) if args.json else format_status(status))
        return 0
    print(f"{reply['state']} ({reply['reason']})" + (" · muted" if reply.get("muted") else ""))
    notices = reply.get("notices") or []
    if notices and notices[-1].startswith(("join:", "call:")):
        print(notices[-1])
    return 0


def format_status(status: dict) -> str:
    """A few human lines: state, call figures, calendar."""
    lines = [f"state:      {status['state']} ({status['reason']})",
             f"microphone: {'muted' if status.get('muted') else 'live'}"]
    if status.get("meeting"):
        lines.append(f"meeting:    {status['meeting']}")
    call = status.get("call_session")
    if call:
        lines.append(f"call:       {call['meeting']} · {'connected' if call['connected'] else 'connecting'}"
                     f" · rejoins {call['rejoins']}")
        lines.append(f"media:      send {call.get('tx_video_kbps', '-')} kbit/s video at "
                     f"{call.get('tx_fps', '-')} fps · receive {call.get('rx_kbps', '-')} kbit/s · "
                     f"RTT {call.get('rtt_ms', '-')} ms · loss {call.get('tx_loss', '-')}")
        video = call.get("video") or {}
        if video:
            rejected = "; ".join(f"{n}: {why}" for n, why in (video.get("rejected") or {}).items())
            lines.append(f"video:      {video['encoder']} ({video['reason']}) · {video.get('quality')}"
                         + (f" · not used: {rejected}" if rejected else ""))
        fec = (call.get("sending") or {}).get("fec")
        if fec and fec["expected_loss"] > 0:
            lines.append(f"protection: parity for {fec['expected_loss']:.0%} loss · "
                         f"{fec['data_share']:.0%} of the video bitrate is picture")
        elif fec:
            lines.append("protection: no parity (no loss seen)")
        sending = call.get("sending") or {}
        if sending.get("target_bps"):
            lines.append(f"send rate:  aiming at {sending['target_bps'] / 1000:.0f} kbit/s "
                         f"({sending.get('rate_reason', '-')})")
        for pid, who in call.get("participants", {}).items():
            lines.append(f"  {who['display']} ({pid}): {who['frames_shown']} frames, "
                         f"audio {who['audio_level_dbfs']} dBFS")
    prov = status.get("provisioning")
    if prov:
        line = f"provision:  {prov.get('state')} · config version {prov.get('config_version', 0)}"
        if prov.get("service"):
            line += f" · {prov['service']}"
        if prov.get("user_code"):
            line += f" · activation code {prov['user_code']} at {prov.get('verification_uri')}"
        lines.append(line)
        if prov.get("problem"):
            lines.append(f"            {prov['problem']}")
    if status.get("upcoming"):
        up = status["upcoming"]
        lines.append(f"upcoming:   {up.get('summary')} at {up.get('start')}")
    if status.get("notices"):
        lines.append(f"notice:     {status['notices'][-1]}")
    return "\n".join(lines)
