"""The "waiting in inbox/" section of STATUS.html and `lipsyncd status`: every drop intake is holding
back, what it waits for, since when, and when it will be rejected if nothing changes.

Self-contained (its own texts; the page's table markup, which stacks into cards on a phone) so the page
layout can change around it. Every value comes from producers' file names: escaped here, control
characters were already escaped by intake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.housekeeping.layout import e, plain_time, table, when
from daemon.housekeeping.texts import duration

TEXTS = {
    "en": {"title": "Waiting in inbox", "drop": "Drop", "waits": "Waiting for", "since": "Since",
           "deadline": "If nothing changes", "empty": "Nothing is waiting in the inbox.",
           "missing": "not there yet", "empty_file": "still empty (0 bytes)", "copying": "still being copied",
           "incomplete": "looks incomplete", "open": "still open for writing",
           "files_missing": "rejected at {at} as never arrived", "media_incomplete": "fails at {at} as incomplete",
           "none": "waits as long as it changes"},
    "zh": {"title": "收件箱中等待的任务", "drop": "任务单", "waits": "在等待", "since": "开始于",
           "deadline": "如果没有变化", "empty": "收件箱中没有等待的任务。",
           "missing": "尚未到达", "empty_file": "仍为空（0 字节）", "copying": "仍在复制",
           "incomplete": "看起来不完整", "open": "仍被写入程序打开",
           "files_missing": "将于 {at} 作为未到齐被拒绝", "media_incomplete": "将于 {at} 作为不完整被拒绝",
           "none": "只要还在变化就一直等待"},
}


def _t(lang: str, key: str, **params: object) -> str:
    text = TEXTS.get(lang, TEXTS["en"]).get(key) or TEXTS["en"][key]
    return text.format(**params) if params else text


def waits(snap: dict[str, Any]) -> list[dict[str, Any]]:
    rows = snap.get("waiting")
    return [w for w in rows if isinstance(w, dict)] if isinstance(rows, list) else []


def _reasons(wait: dict[str, Any], lang: str) -> list[str]:
    out = []
    for f in wait.get("waits_for") or []:
        if isinstance(f, dict):
            why = str(f.get("why", ""))
            word = _t(lang, "empty_file" if why == "empty" else why) if why in TEXTS["en"] else why
            detail = f" ({f['detail']})" if f.get("detail") else ""
            out.append(f"{f.get('name', '?')}: {word}{detail}")
    return out


def _deadline(wait: dict[str, Any], lang: str, shown: Callable[[float], str], escape: bool) -> str:
    """The orphan deadline in words; `shown(stamp)` writes its time (HTML <time> or plain text)."""
    code, at = wait.get("deadline_code"), wait.get("deadline")
    if code in ("files_missing", "media_incomplete") and isinstance(at, (int, float)):
        words = _t(lang, str(code), at="\0")
        return (e(words) if escape else words).replace("\0", shown(at))
    return e(_t(lang, "none")) if escape else _t(lang, "none")


def html_section(snap: dict[str, Any], lang: str, now: float) -> str:
    rows = []
    for w in waits(snap):
        since = w.get("since")
        ago = duration(now - since, lang) if isinstance(since, (int, float)) else "–"
        rows.append([e(w.get("drop")), "<br>".join(e(r) for r in _reasons(w, lang)),
                     f"{when(since)} ({e(ago)})", _deadline(w, lang, when, escape=True)])
    heads = [(_t(lang, "drop"), False), (_t(lang, "waits"), False), (_t(lang, "since"), True),
             (_t(lang, "deadline"), False)]
    return table(_t(lang, "title"), "waiting", heads, rows, _t(lang, "empty"), stack=True)


def text_lines(snap: dict[str, Any], now: float) -> list[str]:
    """The same for a terminal: a titled block, one line per drop and one per file it waits for."""
    rows = waits(snap)
    if not rows:
        return []
    out = ["", f"WAITING IN INBOX ({len(rows)})"]
    for w in rows:
        since = w.get("since")
        ago = duration(now - since, "en") if isinstance(since, (int, float)) else "?"
        out.append(f"  {w.get('drop', '?')}  since {plain_time(since)} ({ago})  "
                   f"{_deadline(w, 'en', plain_time, escape=False)}")
        out += [f"      {r}" for r in _reasons(w, "en")]
    return out
