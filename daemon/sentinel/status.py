"""The watchdog's own status: `<root>/.lipsyncd/roles/watchdog.json`, and the appliance's figures that it
and the metrics textfile (sentinel/metrics.py) report.

Share-wide figures (jobs, disk, queue) are the same on every host's watchdog; per-worker figures cover
this host's workers only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from daemon.core import atomic
from daemon.sentinel import memory
from daemon.sentinel.survey import Survey


def write_json(internal: Path, snapshot: dict[str, Any]) -> None:
    path = internal / "roles" / "watchdog.json"
    path.parent.mkdir(exist_ok=True)  # not parents: an unmounted share must not be recreated locally
    atomic.write_json(path, {**snapshot, "pid": os.getpid()}, fsync=False)


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
            "beats": {f"{host}--{w}": {"fps": b.progress.fps, "heartbeat_age_s": round(now - b.written_at, 1),
                                       "progress_age_s": round(now - b.progress_at, 1),
                                       "rss_bytes": memory.resident_bytes(b.pid, b.pid_start)}
                      for w, b in sorted(beats.items())}}
