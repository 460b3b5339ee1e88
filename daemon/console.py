"""`lipsyncd status` for a terminal: the snapshot as a few aligned blocks an operator reads at a glance."""

from __future__ import annotations

import shutil
import time
from typing import Any

from daemon.housekeeping import inbox_section
from daemon.housekeeping.texts import duration, number, size

BAR = 20


def bar(percent: float | None, width: int = BAR) -> str:
    if not number(percent):
        return "[" + "?" * width + "]"
    filled = int(round(width * max(0.0, min(100.0, percent)) / 100))
    return "[" + "#" * filled + "." * (width - filled) + f"] {percent:3.0f}%"


def render(snap: dict[str, Any], root: str, width: int | None = None) -> str:
    width = width or shutil.get_terminal_size((100, 24)).columns
    now = float(snap.get("generated_at") or time.time())
    counts = snap.get("counts") or {}
    intake = snap.get("intake")
    disk = snap.get("disk") or {}
    state = ("no news from intake (is it running?)" if intake is None else
             f"PAUSED: {intake.get('pause_reason') or '?'}" if intake.get("paused") else "accepting drops")
    wait = snap.get("oldest_wait_s") or 0
    out = [f"lipsyncd on {root} at {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(now))}",
           f"intake: {state}    disk: {size(disk.get('free_bytes'))} free",
           f"queued {counts.get('staging', 0)}" + (f" (oldest waiting {duration(wait, 'en')})" if wait else "")
           + f"   running {counts.get('processing', 0)}   done {counts.get('done', 0)}"
           f"   failed {counts.get('failed', 0)}   inbox {counts.get('inbox', 0)}"]
    out += _block("RUNNING", [[r["job"], r.get("worker") or "?", bar(r.get("percent")),
                               f"{r['chunk']}/{r['chunks']}" if r.get("chunks") else "",
                               f"{r['fps']:.1f} fps" if number(r.get("fps")) and r["fps"] else "",
                               f"ETA {duration(r.get('eta_s'), 'en')}" if r.get("eta_s") is not None else ""]
                              for r in snap.get("running") or []], width)
    queued = snap.get("queued") or []
    out += _block(f"QUEUED ({len(queued)})", [[str(i), q["job"], f"waiting {duration(q.get('wait_s'), 'en')}",
                                               f"attempt {q.get('attempt', 1)}" if (q.get("attempt") or 1) > 1
                                               else ""] for i, q in enumerate(queued[:10], 1)], width, flex=1)
    out += inbox_section.text_lines(snap, now)
    beats = ((snap.get("watchdog") or {}).get("share") or {}).get("beats") or {}  # memory: the watchdog's host
    out += _block("WORKERS", [[f"{w['host']}/{w['worker']}", w.get("phase") or "?", w.get("job") or "",
                               f"heartbeat {duration(w.get('last_heartbeat_age_s'), 'en')} ago",
                               _memory(beats.get(f"{w['host']}--{w['worker']}"))]
                              for w in snap.get("workers") or []], width, flex=2)
    out += _block("RECENTLY FAILED", [[f["job"], f.get("message") or f.get("code") or "?"]
                                      for f in (snap.get("failed") or [])[:5]], width, flex=1)
    out += _block("RECENTLY DONE", [[d["job"], str(d.get("output") or ""),
                                     f"took {duration(d.get('render_s'), 'en')}" if d.get("render_s") else ""]
                                    for d in (snap.get("done") or [])[:5]], width)
    channels = ((snap.get("watchdog") or {}).get("channels") or {})
    if channels:
        out += ["", "ALERTS  " + "   ".join(
            f"{n}: {c.get('state', '?')} ({c.get('sent', 0)} sent"
            + (f", last error {c.get('last_error')}" if c.get("state") != "ok" and c.get("last_error") else "") + ")"
            for n, c in sorted(channels.items()))]
    return "\n".join(out) + "\n"


def _memory(beat: dict[str, Any] | None) -> str:
    rss = (beat or {}).get("rss_bytes")
    return f"RAM {size(rss)}" if number(rss) else ""


def _block(title: str, rows: list[list[str]], width: int, flex: int = 0) -> list[str]:
    """A titled block of left-aligned columns; column `flex` is cut to fit the terminal."""
    if not rows:
        return []
    cols = max(len(r) for r in rows)
    rows = [r + [""] * (cols - len(r)) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(cols)]
    room = width - 2 - (sum(widths) - widths[flex]) - 2 * (cols - 1)
    widths[flex] = max(12, min(widths[flex], room))
    lines = ["", title]
    for r in rows:
        cells = [_cut(c, w).ljust(w) for c, w in zip(r, widths, strict=True)]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"
