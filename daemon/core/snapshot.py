"""A read-only picture of the appliance, built from the folders and heartbeats (never stored state).

Used by `lipsyncd status`, `submit --wait`, and the status page.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from daemon.core import atomic, heartbeat
from daemon.core.job import Job
from daemon.core.state import JobState, jobs_in

RECENT = 20


def collect(root: Path, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    internal = root / ".lipsyncd"
    beats = {b.job: b for b in heartbeat.read_all(internal) if b.job}
    queued = [_queued(j, now) for j in jobs_in(root, JobState.STAGING)]
    queued.sort(key=lambda q: q["accepted_at"] or 0)
    running = [_running(j, beats) for j in jobs_in(root, JobState.PROCESSING)]
    done = _recent(jobs_in(root, JobState.DONE))
    failed = _recent(jobs_in(root, JobState.FAILED))
    return {
        "generated_at": round(now, 3),
        "counts": {s.value: n for s, n in (
            (JobState.INBOX, _inbox_count(root)), (JobState.STAGING, len(queued)),
            (JobState.PROCESSING, len(running)), (JobState.DONE, _count(root, JobState.DONE)),
            (JobState.FAILED, _count(root, JobState.FAILED)))},
        "oldest_wait_s": round(now - queued[0]["accepted_at"], 1) if queued and queued[0]["accepted_at"] else 0,
        "queued": queued,
        "running": running,
        "done": [_finished(j) for j in done],
        "failed": [_finished(j) for j in failed],
        "workers": [_worker(b, now) for b in heartbeat.read_all(internal)],
        "intake": _read(internal / "roles" / "intake.json"),
        "watchdog": _read(internal / "roles" / "watchdog.json"),
    }


def _queued(job: Job, now: float) -> dict[str, Any]:
    spec = _spec(job)
    return {"job": job.id, "batch": spec.get("batch", ""), "accepted_at": spec.get("accepted_at"),
            "attempt": job.attempt(), "engine": spec.get("engine")}


def _running(job: Job, beats: dict[str, heartbeat.Heartbeat]) -> dict[str, Any]:
    beat = beats.get(job.id)
    row: dict[str, Any] = {"job": job.id, "owner": job.owner, "attempt": job.attempt(),
                           "batch": _spec(job).get("batch", "")}
    if beat is not None:
        total = beat.frames_total or 0
        row.update(worker=f"{beat.host}/{beat.worker}", phase=beat.phase, chunk=beat.chunk, chunks=beat.chunks,
                   percent=round(100.0 * beat.frames_done / total, 1) if total else None,
                   fps=beat.fps, eta_s=beat.eta_s)
    return row


def _finished(job: Job) -> dict[str, Any]:
    report = job.report() or {}
    return {"job": job.id, "batch": report.get("batch", ""), "code": report.get("code"),
            "message": report.get("message", ""), "todo": report.get("todo", ""),
            "output": report.get("output"), "finished_at": (report.get("timings") or {}).get("finished_at")}


def _worker(beat: heartbeat.Heartbeat, now: float) -> dict[str, Any]:
    return {"host": beat.host, "worker": beat.worker, "pid": beat.pid, "phase": beat.phase, "job": beat.job,
            "last_progress_age_s": round(now - beat.progress_at, 1),
            "last_heartbeat_age_s": round(now - beat.written_at, 1)}


def _recent(jobs: list[Job]) -> list[Job]:
    def mtime(job: Job) -> float:
        try:
            return os.stat(job.path).st_mtime
        except OSError:
            return 0.0

    return sorted(jobs, key=mtime, reverse=True)[:RECENT]


def _count(root: Path, state: JobState) -> int:
    try:
        return sum(1 for e in os.scandir(root / state.folder) if not e.name.startswith("."))
    except OSError:
        return 0


def _inbox_count(root: Path) -> int:
    try:
        return sum(1 for e in os.scandir(root / "inbox") if e.name.lower().endswith(".toml") or e.is_dir())
    except OSError:
        return 0


def _spec(job: Job) -> dict[str, Any]:
    data = _read(job.path / "job.json")
    return data or {}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = atomic.read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
