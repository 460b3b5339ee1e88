"""The watchdog's own status: `<root>/.lipsyncd/roles/watchdog.json` and, optionally, a node_exporter
textfile (`lipsyncd_watchdog.prom`: temp name without .prom, then rename; no timestamps in samples).

Share-wide series (jobs, disk, queue) are the same on every host's watchdog: aggregate them with max(),
not sum(). Per-worker series cover this host's workers only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from daemon.core import atomic
from daemon.sentinel.survey import Survey


def write_json(internal: Path, snapshot: dict[str, Any]) -> None:
    path = internal / "roles" / "watchdog.json"
    path.parent.mkdir(exist_ok=True)  # not parents: an unmounted share must not be recreated locally
    atomic.write_json(path, {**snapshot, "pid": os.getpid()}, fsync=False)


def metrics_text(snapshot: dict[str, Any]) -> str:
    out = [
        "# HELP lipsyncd_watchdog_last_pass_timestamp_seconds When the watchdog last finished a pass.",
        "# TYPE lipsyncd_watchdog_last_pass_timestamp_seconds gauge",
        f"lipsyncd_watchdog_last_pass_timestamp_seconds {snapshot['written_at']:.3f}",
        "# HELP lipsyncd_share_reachable 1 if the share answered the last pass.",
        "# TYPE lipsyncd_share_reachable gauge",
        f"lipsyncd_share_reachable {int(bool(snapshot['share_ok']))}",
        "# HELP lipsyncd_worker_healthy 1 if the worker's verdict is healthy.",
        "# TYPE lipsyncd_worker_healthy gauge",
    ]
    for key, w in sorted(snapshot["workers"].items()):
        out.append(f'lipsyncd_worker_healthy{{worker="{_esc(key)}",health="{_esc(w["health"])}"}} '
                   f'{int(w["health"] == "healthy")}')
    out += ["# HELP lipsyncd_worker_restarts Restarts the watchdog requested within the restart window.",
            "# TYPE lipsyncd_worker_restarts gauge"]
    for key, w in sorted(snapshot["workers"].items()):
        out.append(f'lipsyncd_worker_restarts{{worker="{_esc(key)}"}} {w["restarts"]}')
    out += ["# HELP lipsyncd_alert_send_failures_total Failed alert deliveries by channel and code.",
            "# TYPE lipsyncd_alert_send_failures_total counter"]
    for name, ch in sorted(snapshot["channels"].items()):
        for code, count in sorted(ch["failures"].items()):
            labels = f'channel="{_esc(name)}",code="{_esc(code)}"'
            out.append(f"lipsyncd_alert_send_failures_total{{{labels}}} {count}")
    out += ["# HELP lipsyncd_alerts_pending Alerts waiting in the outbox.",
            "# TYPE lipsyncd_alerts_pending gauge", f"lipsyncd_alerts_pending {snapshot['outbox_pending']}"]
    out += _alert_counts(snapshot["channels"]) + _restarts(snapshot["workers"])
    out += _appliance(snapshot.get("share") or {})
    return "\n".join(out) + "\n"


def figures(survey: Survey | None, host: str, now: float, finished: dict[str, int], render_s_sum: float,
            render_s_count: int) -> dict[str, Any]:
    """The appliance as the last answered survey saw it, plus the patrol's tallies since start."""
    if survey is None:
        return {}
    beats = {b.worker: b for b in survey.beats if b.host == host}
    oldest = survey.oldest_queued
    return {"jobs": dict(survey.counts), "disk_free_bytes": survey.disk_free_bytes,
            "oldest_queued_age_s": round(max(0.0, now - oldest[1]), 1) if oldest else 0.0,
            "intake_paused": bool((survey.intake or {}).get("paused")),
            "finished": dict(finished), "render_s_sum": round(render_s_sum, 3), "render_s_count": render_s_count,
            "beats": {f"{host}--{w}": {"fps": b.fps, "heartbeat_age_s": round(now - b.written_at, 1),
                                       "progress_age_s": round(now - b.progress_at, 1)}
                      for w, b in sorted(beats.items())}}


def _metric(name: str, kind: str, help_text: str, samples: list[tuple[str, object]]) -> list[str]:
    """HELP, TYPE and `name{labels} value` lines; labels is the inside of the braces (may be empty)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lines.append(f"{name}{{{labels}}} {_num(value)}" if labels else f"{name} {_num(value)}")
    return lines


def _alert_counts(channels: dict[str, Any]) -> list[str]:
    names = sorted(channels)
    return (_metric("lipsyncd_alerts_sent_total", "counter", "Alert messages delivered, by channel.",
                    [(f'channel="{_esc(n)}"', channels[n].get("sent", 0)) for n in names])
            + _metric("lipsyncd_alerts_failed_total", "counter", "Failed alert delivery attempts, by channel.",
                      [(f'channel="{_esc(n)}"', channels[n].get("failed", 0)) for n in names]))


def _restarts(workers: dict[str, Any]) -> list[str]:
    return _metric("lipsyncd_worker_restarts_total", "counter", "Restarts the watchdog requested since it started.",
                   [(f'worker="{_esc(k)}"', w.get("restarts_total", 0)) for k, w in sorted(workers.items())])


def _appliance(share: dict[str, Any]) -> list[str]:
    if not share:
        return []  # the share has not answered yet: no numbers rather than zeros
    jobs, beats = share["jobs"], share["beats"]
    out = _metric("lipsyncd_jobs", "gauge", "Jobs per state folder (inbox: tickets waiting).",
                  [(f'state="{_esc(s)}"', jobs.get(s, 0)) for s in ("inbox", "staging", "processing", "done",
                                                                      "failed")])
    out += _metric("lipsyncd_oldest_queued_age_seconds", "gauge", "How long the oldest job in staging/ has waited.",
                   [("", share["oldest_queued_age_s"])])
    if share.get("disk_free_bytes") is not None:
        out += _metric("lipsyncd_share_free_bytes", "gauge", "Free space on the share.",
                       [("", share["disk_free_bytes"])])
    out += _metric("lipsyncd_intake_paused", "gauge", "1 while intake does not accept drops (disk or share).",
                   [("", int(share["intake_paused"]))])
    out += _metric("lipsyncd_jobs_finished_total", "counter", "Jobs that reached done/ or failed/ since the "
                   "watchdog started.", [(f'state="{s}"', n) for s, n in sorted(share["finished"].items())])
    out += _metric("lipsyncd_job_render_seconds", "summary", "Render time of jobs finished since the watchdog "
                   "started.", [])
    out += [f"lipsyncd_job_render_seconds_sum {_num(share['render_s_sum'])}",
            f"lipsyncd_job_render_seconds_count {share['render_s_count']}"]
    for name, key, help_text in (
            ("lipsyncd_worker_frames_per_second", "fps", "Frames per second of the worker's current job."),
            ("lipsyncd_worker_heartbeat_age_seconds", "heartbeat_age_s", "Seconds since the worker's last heartbeat."),
            ("lipsyncd_worker_progress_age_seconds", "progress_age_s", "Seconds since the worker last made progress.")):
        out += _metric(name, "gauge", help_text, [(f'worker="{_esc(k)}"', b[key]) for k, b in sorted(beats.items())])
    return out


def _num(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else "NaN"
    return str(value)


def write_textfile(folder: Path, snapshot: dict[str, Any]) -> None:
    # atomic.write_bytes uses a dot-prefixed temp name ending in .tmp: never parsed as a .prom file
    atomic.write_bytes(folder / "lipsyncd_watchdog.prom", metrics_text(snapshot).encode(), fsync=False)


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
