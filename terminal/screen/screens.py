"""The room screen's pages outside a call: booting, idle, unprovisioned, joining, leaving,
degraded and the technician view.

Each ``draw_<screen>(painter, model)`` paints the whole canvas and returns the named
rectangles it drew (``{"main": rect, ...}``), which tests use to find what to check.
"""
from __future__ import annotations

import datetime as dt

from terminal.screen.draw import (ACCENT, AMBER, GREEN, GREY, MAIN_TEXT, PANEL, RED, SMALL_TEXT, TEXT,
                                  WHITE, Painter)
from terminal.screen.layout import Rect
from terminal.screen.model import ScreenModel

MARGIN = 0.06             # of the screen height, around everything
Regions = dict[str, Rect]


def draw_header(p: Painter, m: ScreenModel, *, clock: bool = True) -> Regions:
    """Room name top left, time top right: on every page, so the screen always says where
    you are and that it is alive."""
    margin = p.px(MARGIN)
    regions = {}
    if clock:
        regions["clock"] = p.text(m.now.strftime("%H:%M"), p.width - margin, margin, 0.05,
                                  weight="bold", anchor="topright")
    right = regions["clock"][0] - margin if clock else p.width - margin
    regions["room"] = p.text(m.room_name, margin, margin, 0.05, weight="bold",
                             max_width=right - margin)
    return regions


def draw_booting(p: Painter, m: ScreenModel) -> Regions:
    p.clear()
    return {"main": p.text(m.t("booting"), p.width // 2, p.height // 2, MAIN_TEXT, anchor="center")}


def draw_idle(p: Painter, m: ScreenModel) -> Regions:
    p.clear()
    margin = p.px(MARGIN)
    regions = {"room": p.text(m.room_name, margin, margin, 0.065, weight="bold",
                              max_width=p.width * 3 // 5)}
    regions["clock"] = p.text(m.now.strftime("%H:%M"), p.width - margin, margin, 0.15,
                              weight="bold", anchor="topright")
    regions["date"] = p.text(_date(m.now, m.language), p.width - margin, regions["clock"][1] + regions["clock"][3]
                             + p.px(0.03), TEXT, GREY, anchor="topright")
    date_bottom = regions["date"][1] + regions["date"][3]
    top = max(p.height * 33 // 100, date_bottom + p.px(0.05))
    if m.upcoming is not None:
        minutes = round((m.upcoming.start - m.now).total_seconds() / 60)
        key = "upcoming" if minutes > 0 else ("upcoming_now" if minutes == 0 else "upcoming_live")
        words = m.t(key, title=m.upcoming.title, minutes=minutes)
        banner = (margin, top - p.px(0.02), p.width - 2 * margin, p.px(0.09))
        p.panel(banner, ACCENT)
        regions["upcoming"] = p.text(words, margin + p.px(0.03), banner[1] + banner[3] // 2, TEXT,
                                     weight="bold", anchor="midleft", max_width=banner[2] - p.px(0.06))
        top += p.px(0.12)
    regions["main"] = p.text(m.t("press_to_join" if m.can_join else "nothing_to_join"), margin, top, MAIN_TEXT,
                             WHITE if m.can_join else GREY, max_width=p.width - 2 * margin)
    if m.has_calendar:         # without a calendar, "no more meetings" would be a guess
        regions.update(_agenda(p, m, top + p.px(0.12)))
    return regions


def _agenda(p: Painter, m: ScreenModel, top: int) -> Regions:
    margin = p.px(MARGIN)
    regions = {"agenda_title": p.text(m.t("next_meetings") if m.meetings else m.t("no_meetings"),
                                      margin, top, SMALL_TEXT, GREY)}
    y = top + p.px(0.05)
    for index, meeting in enumerate(m.meetings):
        span = meeting.start.strftime("%H:%M") + (f"–{meeting.end.strftime('%H:%M')}" if meeting.end else "")
        row = (margin, y, p.width - 2 * margin, p.px(0.075))
        p.panel(row, PANEL)
        p.text(span, margin + p.px(0.03), y + row[3] // 2, TEXT, GREY, anchor="midleft")
        regions[f"meeting{index}"] = p.text(meeting.title, margin + p.px(0.36), y + row[3] // 2, TEXT,
                                            anchor="midleft", max_width=row[2] - p.px(0.4))
        y += row[3] + p.px(0.012)
    return regions


def _date(now: dt.datetime, language: str) -> str:
    if language == "zh":
        return f"{now.month}月{now.day}日 星期{'一二三四五六日'[now.weekday()]}"
    return now.strftime("%A %-d %B")


def draw_unprovisioned(p: Painter, m: ScreenModel) -> Regions:
    p.clear()
    margin = p.px(MARGIN)
    regions = draw_header(p, m)
    split = p.width * 58 // 100
    left_w = split - 2 * margin
    y = p.height * 22 // 100
    regions["main"] = p.text(m.t("activate_title"), margin, y, MAIN_TEXT, weight="bold", max_width=left_w)
    y += p.px(0.11)
    regions["step"] = p.text(m.t("activate_step"), margin, y, TEXT, GREY, max_width=left_w)
    y += p.px(0.08)
    regions["url"] = p.text(m.verification_url or "—", margin, y, TEXT, ACCENT, max_width=left_w)
    y += p.px(0.08)
    code_box = (margin, y, left_w, p.px(0.2))
    p.panel(code_box, PANEL)
    regions["code"] = p.text(_spaced(m.activation_code) or "—", margin + left_w // 2, y + code_box[3] // 2,
                             0.13, WHITE, weight="bold", anchor="center", max_width=left_w - p.px(0.06))
    y = p.height - margin - p.px(0.1)
    serial = m.t("labelled", label=m.t("serial"), value=m.serial or "—")
    regions["serial"] = p.text(serial, margin, y, SMALL_TEXT, GREY)
    network = m.t("labelled", label=m.t("network"), value=m.network_text or "—")
    colour = GREEN if m.is_online else (RED if m.is_online is False else GREY)
    regions["network"] = p.text(network, margin, y + p.px(0.05), SMALL_TEXT, colour, max_width=left_w)
    side = min(p.width - split - margin, p.height - 2 * margin - p.px(0.12))
    qr_box = (split, (p.height - side) // 2 + p.px(0.04), side, side)
    if m.verification_url:
        p.panel(qr_box, WHITE)
        regions["qr"] = p.qr(m.verification_url, qr_box)
    return regions


def _spaced(code: str) -> str:
    """Letters spread apart so a code is read character by character across a room."""
    return " ".join(code.replace(" ", ""))


def draw_transition(p: Painter, m: ScreenModel) -> Regions:
    """Joining and leaving: one sentence in the middle, the meeting's name under it."""
    p.clear()
    regions = draw_header(p, m)
    cx, cy = p.width // 2, p.height // 2
    regions["main"] = p.text(m.t("joining" if m.screen == "joining" else "leaving"), cx, cy - p.px(0.02),
                             0.075, weight="bold", anchor="midbottom", max_width=p.width - 2 * p.px(MARGIN))
    if m.meeting_title:
        regions["meeting"] = p.text(m.meeting_title, cx, cy + p.px(0.04), TEXT, GREY, anchor="midtop",
                                    max_width=p.width - 2 * p.px(MARGIN))
    return regions


def draw_degraded(p: Painter, m: ScreenModel) -> Regions:
    p.clear()
    margin = p.px(MARGIN)
    regions = draw_header(p, m)
    width = p.width - 2 * margin
    y = p.height * 26 // 100
    icon = p.px(0.1)
    p.warning_sign((margin + icon // 2, y + icon // 2), icon)
    regions["title"] = p.text(m.t("degraded_title"), margin + icon + p.px(0.04), y + icon // 2, TEXT, AMBER,
                              weight="bold", anchor="midleft")
    y += icon + p.px(0.06)
    regions["main"] = p.text(m.problem, margin, y, 0.075, weight="bold", max_width=width)
    y += p.px(0.14)
    regions["what_to_do"] = p.text(m.t("what_to_do"), margin, y, SMALL_TEXT, GREY)
    y += p.px(0.055)
    regions["advice"] = p.text(m.advice, margin, y, 0.05, max_width=width)
    if m.detail:
        regions["detail"] = p.text(m.detail, margin, p.height - margin, SMALL_TEXT, GREY,
                                   anchor="bottomleft", max_width=width)
    return regions


def draw_technician(p: Painter, m: ScreenModel) -> Regions:
    p.clear()
    margin = p.px(MARGIN)
    regions = draw_header(p, m)
    regions["main"] = p.text(m.t("technician"), margin, p.px(0.17), MAIN_TEXT, ACCENT, weight="bold")
    y = p.px(0.3)
    row_h = min(p.px(0.07), (p.height - y - p.px(0.14)) // max(1, len(m.health)))
    for index, line in enumerate(m.health):
        p.dot((margin + p.px(0.012), y + row_h // 2), p.px(0.012), GREEN if line.is_ok else RED)
        p.text(line.label, margin + p.px(0.05), y + row_h // 2, SMALL_TEXT, GREY, anchor="midleft")
        regions[f"health{index}"] = p.text(line.value, margin + p.px(0.5), y + row_h // 2, SMALL_TEXT,
                                           WHITE if line.is_ok else RED, anchor="midleft",
                                           max_width=p.width - margin - p.px(0.5) - margin)
        y += row_h
    regions["hint"] = p.text(m.t("technician_hint"), margin, p.height - margin, SMALL_TEXT, GREY,
                             anchor="bottomleft")
    return regions
