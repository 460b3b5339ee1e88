"""STATUS.html: the snapshot as one static, self-refreshing page with no external assets.

It opens from a Windows share in any browser (file://), on a laptop or a phone. Every value that
reaches the page is escaped: job names, batch names and messages come from producers' tickets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from daemon.housekeeping import inbox_section
from daemon.housekeeping.layout import CSS, LOCAL_TIME_JS, e, picture, when
from daemon.housekeeping.layout import table as _table
from daemon.housekeeping.texts import TEXTS, duration, say, size

# one section of the page: (snapshot, language, now) -> HTML; a new section is a function and a line here
Section = Callable[[dict[str, Any], str, float], str]

# reloads come from the meta tag; this only warns when the file itself stopped changing
STALE_JS = """
(function(){var g=%s,el=document.getElementById('stale');if(!el)return;
var age=Date.now()/1000-g;if(age>%d){el.hidden=false;
el.textContent=el.getAttribute('data-t').replace('{age}',Math.round(age/60)+' min');}})();
"""


def render(snap: dict[str, Any], language: str = "en", refresh_s: float = 5.0) -> str:
    lang = language if language in ("en", "zh") else "en"
    now = float(snap.get("generated_at") or 0)
    refresh = max(2, math.ceil(refresh_s))
    head = (f'<!DOCTYPE html>\n<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{refresh}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{e(say(lang, "title"))}</title><style>{CSS}</style></head><body><main>')
    updated = e(say(lang, "updated", time="\0", n=refresh)).replace("\0", when(now, seconds=True))
    parts = [head, f'<h1>{e(say(lang, "title"))}</h1>', f'<div class="sub">{updated}</div>',
             f'<div id="stale" class="banner warn" hidden data-t="{e(say(lang, "stale", age="{age}"))}"></div>',
             *_banners(snap, lang), *(section(snap, lang, now) for section in SECTIONS),
             f'<footer>{e(say(lang, "help"))}</footer></main>',
             f"<script>{STALE_JS % (json.dumps(now), max(60, refresh * 6))}{LOCAL_TIME_JS}</script>"
             "</body></html>\n"]
    return "".join(parts)


def _banners(snap: dict[str, Any], lang: str) -> list[str]:
    out = []
    intake = snap.get("intake") or {}
    if intake.get("paused"):
        reason = say(lang, "intake_paused", reason=intake.get("pause_reason") or "?")
        out.append(f'<div class="banner bad" id="intake-paused">{e(say(lang, "intake"))}: {e(reason)}</div>')
    for name, ch in sorted(((snap.get("watchdog") or {}).get("channels") or {}).items()):
        if isinstance(ch, dict) and ch.get("state") == "broken":
            out.append(f'<div class="banner warn">{e(say(lang, "h_alerts"))}: {e(name)} '
                       f'{e(say(lang, "ch_broken"))}: {e(ch.get("last_error", ""))}</div>')
    return out


def _cards(snap: dict[str, Any], lang: str, now: float) -> str:
    counts = snap.get("counts") or {}
    wait = snap.get("oldest_wait_s") or 0
    intake = snap.get("intake")
    if intake is None:
        intake_text, intake_cls = say(lang, "intake_unknown"), "warn"
    elif intake.get("paused"):
        intake_text, intake_cls = say(lang, "paused"), "bad"
    else:
        intake_text, intake_cls = say(lang, "intake_ok"), "ok"
    disk = snap.get("disk") or {}
    cards = [
        ("queued", counts.get("staging", 0), say(lang, "oldest", d=duration(wait, lang)) if wait
         else say(lang, "none_waiting"), ""),
        ("running", counts.get("processing", 0), "", ""),
        ("done", counts.get("done", 0), "", "ok"),
        ("failed", counts.get("failed", 0), "", "bad" if counts.get("failed") else ""),
        ("inbox", counts.get("inbox", 0), "", ""),
    ]
    out = ['<div class="cards">']
    for key, value, note, cls in cards:
        out.append(f'<div class="card {cls}" id="card-{key}"><b>{e(value)}</b><span>{e(say(lang, key))}'
                   f'{" · " + e(note) if note else ""}</span></div>')
    out.append(f'<div class="card {intake_cls}" id="card-intake"><b>{e(say(lang, "intake"))}</b>'
               f'<span>{e(intake_text)}</span></div>')
    if disk:
        free, total = size(disk.get("free_bytes")), size(disk.get("total_bytes"))
        out.append(f'<div class="card" id="card-disk"><b>{e(free)}</b><span>{e(say(lang, "disk"))} · '
                   f'{e(say(lang, "disk_of", free=free, total=total))}</span></div>')
    out.append("</div>")
    return "".join(out)


def _phase(lang: str, phase: object) -> str:
    if not phase:
        return "–"
    key = f"ph_{phase}"
    return say(lang, key) if key in TEXTS["en"] else str(phase)


def _job_cell(row: dict[str, Any]) -> str:
    batch = row.get("batch")
    tail = f'<div class="sub">{e(batch)}</div>' if batch and batch != row.get("job") else ""
    return f'{e(row.get("job"))}{tail}'


def _running(snap: dict[str, Any], lang: str, now: float) -> str:
    rows = []
    for r in snap.get("running") or []:
        pct = r.get("percent")
        bar = (f'<div class="bar" title="{e(pct)}%"><i style="width:{min(100.0, max(0.0, float(pct))):.1f}%">'
               f'</i></div><span class="num">{float(pct):.0f}%</span>' if isinstance(pct, (int, float))
               else e(_phase(lang, r.get("phase"))))
        chunk = f'{r["chunk"]}/{r["chunks"]}' if r.get("chunks") else "–"
        fps = f'{r["fps"]:.1f}' if isinstance(r.get("fps"), (int, float)) and r["fps"] else "–"
        rows.append([_job_cell(r), e(r.get("worker") or "–"), bar, f'<span class="num">{e(chunk)}</span>',
                     f'<span class="num">{e(fps)}</span>', e(duration(r.get("eta_s"), lang)),
                     e(duration(r.get("elapsed_s"), lang))])
    headers = [(say(lang, "job"), False), (say(lang, "worker"), True), (say(lang, "progress"), False),
               (say(lang, "chunk"), True), (say(lang, "fps"), True), (say(lang, "eta"), False),
               (say(lang, "elapsed"), True)]
    return _table(say(lang, "h_running"), "running", headers, rows, say(lang, "empty_running"))


def _queue(snap: dict[str, Any], lang: str, now: float) -> str:
    rows = [[f'<span class="num">{i}</span>', _job_cell(q), e(duration(q.get("wait_s"), lang)),
             e(q.get("attempt") or 1)] for i, q in enumerate(snap.get("queued") or [], 1)]
    headers = [("#", False), (say(lang, "job"), False), (say(lang, "waiting"), False),
               (say(lang, "attempt"), True)]
    return _table(say(lang, "h_queue"), "queue", headers, rows, say(lang, "empty_queue"))


def _workers(snap: dict[str, Any], lang: str, now: float) -> str:
    rows = []
    beats = ((snap.get("watchdog") or {}).get("share") or {}).get("beats") or {}  # the watchdog's own host
    for w in snap.get("workers") or []:
        age = w.get("last_heartbeat_age_s")
        cls = "bad" if isinstance(age, (int, float)) and age > 300 else ""
        name = f'{w.get("host")}/{w.get("worker")}' + (f' · GPU {w["gpu"]}' if w.get("gpu") not in (None, "") else "")
        rss = (beats.get(f'{w.get("host")}--{w.get("worker")}') or {}).get("rss_bytes")
        rows.append([e(name), e(_phase(lang, w.get("phase"))), e(w.get("job") or "–"),
                     f'<span class="{cls}">{e(say(lang, "ago", d=duration(age, lang)))}</span>',
                     f'<span class="num">{e(size(rss))}</span>'])
    headers = [(say(lang, "worker"), False), (say(lang, "phase"), False), (say(lang, "job"), True),
               (say(lang, "heartbeat"), False), (say(lang, "ram"), True)]
    return _table(say(lang, "h_workers"), "workers", headers, rows, say(lang, "empty_workers"))


def _gpus(snap: dict[str, Any], lang: str, now: float) -> str:
    gpus = (snap.get("watchdog") or {}).get("gpus") or []
    if not gpus:
        return ""  # no NVML on the watchdog's host: nothing to show, not an error
    rows = [[e(g.get("host", "")), e(f'#{g.get("index")} {g.get("name") or g.get("uuid", "")}'),
             f'<span class="num">{e(size(g.get("used")))} / {e(size(g.get("total")))}</span>'] for g in gpus]
    headers = [(say(lang, "host"), False), ("GPU", False), (say(lang, "memory"), False)]
    return _table(say(lang, "h_gpus"), "gpus", headers, rows, "")


def _failed(snap: dict[str, Any], lang: str, now: float) -> str:
    failed = snap.get("failed") or []
    shots = any(f.get("preview") for f in failed)
    rows = [[_job_cell(f), e(f.get("message") or f.get("code") or "–"), f'<span class="todo">{e(f.get("todo") or "")}'
             "</span>", when(f.get("finished_at")),
             *([picture(f.get("preview"), say(lang, "shot_failed_alt", job=f.get("job")),
                        say(lang, "shot_failed"))] if shots else [])] for f in failed]
    # what to do is what a producer came for: never a column that hides on a phone (rows stack instead)
    headers = [(say(lang, "job"), False), (say(lang, "reason"), False), (say(lang, "todo"), False),
               (say(lang, "finished"), False), *([(say(lang, "picture"), False)] if shots else [])]
    return _table(say(lang, "h_failed"), "failed", headers, rows, say(lang, "empty_failed"), stack=True)


def _done(snap: dict[str, Any], lang: str, now: float) -> str:
    done = snap.get("done") or []
    shots = any(d.get("preview") for d in done)
    rows = [[_job_cell(d), *([picture(d.get("preview"), say(lang, "shot_done_alt", job=d.get("job")))]
                             if shots else []),
             e(d.get("output") or "–"), when(d.get("finished_at")), e(duration(d.get("render_s"), lang))]
            for d in done]
    headers = [(say(lang, "job"), False), *([(say(lang, "picture"), False)] if shots else []),
               (say(lang, "output"), False), (say(lang, "finished"), False), (say(lang, "took"), False)]
    return _table(say(lang, "h_done"), "done", headers, rows, say(lang, "empty_done"), stack=True)


def _alerts(snap: dict[str, Any], lang: str, now: float) -> str:
    channels = (snap.get("watchdog") or {}).get("channels") or {}
    rows = []
    for name, ch in sorted(channels.items()):
        if not isinstance(ch, dict):
            continue
        state = str(ch.get("state", "ok"))
        cls = {"ok": "ok", "retrying": "warn", "broken": "bad"}.get(state, "")
        rows.append([e(name), f'<span class="{cls}">{e(say(lang, "ch_" + state))}</span>',
                     f'<span class="num">{e(ch.get("sent", 0))}</span>',
                     f'<span class="num">{e(ch.get("failed", 0))}</span>', e(ch.get("last_error") or "")])
    headers = [(say(lang, "channel"), False), (say(lang, "phase"), False), (say(lang, "sent"), False),
               (say(lang, "failed_n"), True), (say(lang, "last_error"), True)]
    return _table(say(lang, "h_alerts"), "alerts", headers, rows, say(lang, "empty_alerts"))


SECTIONS: list[Section] = [
    _cards,
    _running,
    _queue,
    inbox_section.html_section,
    _workers,
    _gpus,
    _failed,
    _done,
    _alerts,
]
