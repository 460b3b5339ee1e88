"""A read-only picture of the appliance, built from the folders and heartbeats (never stored state).

Used by `lipsyncd status`, `submit --wait`, STATUS.html/status.json and the metrics. Every value comes
from a file some role wrote; strings in it are producer- or operator-controlled and must be escaped
by whoever renders them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from daemon.core import atomic, heartbeat, lease, progress
from daemon.core.job import Job
from daemon.core.share import Share
from daemon.core.state import JobState, jobs_in

RECENT = 20


def collect(root: Path, now: float | None = None, recent: int = RECENT) -> dict[str, Any]:
    now = time.time() if now is None else now
    share = Share(root)
    all_beats = heartbeat.read_all(share.internal)
    beats = {b.job: b for b in all_beats if b.job}
    queued = [_queued(j, now) for j in jobs_in(root, JobState.STAGING)]
    queued.sort(key=lambda q: (-(q["priority"] or 0), q["accepted_at"] or 0))
    running = [_running(j, beats, now) for j in jobs_in(root, JobState.PROCESSING)]
    running.sort(key=lambda r: r["job"])
    done = _recent(jobs_in(root, JobState.DONE), recent)
    failed = _recent(jobs_in(root, JobState.FAILED), recent)
    oldest = min((q["accepted_at"] for q in queued if q["accepted_at"]), default=None)
    return {
        "generated_at": round(now, 3),
        "counts": {s.value: n for s, n in (
            (JobState.INBOX, _inbox_count(share)), (JobState.STAGING, len(queued)),
            (JobState.PROCESSING, len(running)), (JobState.DONE, _count(share, JobState.DONE)),
            (JobState.FAILED, _count(share, JobState.FAILED)))},
        "oldest_wait_s": round(now - oldest, 1) if oldest else 0,
        "queued": queued,
        "running": running,
        "done": [_finished(j) for j in done],
        "failed": [_finished(j) for j in failed],
        "workers": [_worker(b, now) for b in all_beats],
        "intake": (intake := _read(share.roles / "intake.json")),
        "waiting": _waiting(intake),
        "watchdog": _read(share.roles / "watchdog.json"),
        "disk": disk(root),
    }


def _waiting(intake: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Drops intake holds back in inbox/ (what each waits for, since when, its deadline), as it last wrote."""
    rows = (intake or {}).get("waiting")
    return [w for w in rows if isinstance(w, dict)] if isinstance(rows, list) else []


def disk(path: Path) -> dict[str, int] | None:
    """Free and total bytes of the filesystem holding `path` (free as an unprivileged user sees it)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return {"free_bytes": st.f_bavail * st.f_frsize, "total_bytes": st.f_blocks * st.f_frsize}


def _queued(job: Job, now: float) -> dict[str, Any]:
    spec = _spec(job)
    accepted = spec.get("accepted_at")
    return {"job": job.id, "batch": spec.get("batch", ""), "accepted_at": accepted,
            "wait_s": round(now - accepted, 1) if isinstance(accepted, (int, float)) else None,
            "attempt": job.attempt(), "engine": spec.get("engine"), "priority": spec.get("priority", 0),
            "output": spec.get("output")}


def _running(job: Job, beats: dict[str, heartbeat.Heartbeat], now: float) -> dict[str, Any]:
    spec = _spec(job)
    claim = lease.read(job.path) or {}
    claimed = claim.get("claimed_at")
    row: dict[str, Any] = {"job": job.id, "owner": job.owner, "attempt": job.attempt(),
                           "batch": spec.get("batch", ""), "engine": spec.get("engine"),
                           "output": spec.get("output"),
                           "worker": f"{claim['host']}/{claim['worker']}" if "host" in claim and "worker" in claim
                           else None,
                           "elapsed_s": round(now - claimed, 1) if isinstance(claimed, (int, float)) else None,
                           "phase": None, "chunk": None, "chunks": None, "percent": None, "fps": None,
                           "eta_s": None, "updated_at": None}
    beat = beats.get(job.id)
    if beat is not None:
        told = beat.progress
        row.update(worker=f"{beat.host}/{beat.worker}", phase=beat.phase, chunk=told.chunk, chunks=told.chunks,
                   percent=told.percent, fps=told.fps, eta_s=told.eta_s, updated_at=beat.progress_at)
    news = progress.read(job.path)
    # progress.json lives with the job, so it is right even when the heartbeat already moved on
    if news is not None and news.get("attempt") == job.attempt():
        row.update({k: news.get(k) for k in ("chunk", "chunks", "percent", "fps", "eta_s", "updated_at")})
        row["phase"] = row["phase"] or news.get("phase")
    return row


def _finished(job: Job) -> dict[str, Any]:
    report = job.report() or {}
    timings = report.get("timings") or {}
    finished = timings.get("finished_at")
    if not isinstance(finished, (int, float)):
        finished = _mtime(job.path)
    return {"job": job.id, "batch": report.get("batch", ""), "code": report.get("code"),
            "message": report.get("message", ""), "todo": report.get("todo", ""),
            "output": report.get("output"), "finished_at": finished, "render_s": timings.get("render_s"),
            "attempts": report.get("attempts"), "preview": _preview(job)}


def _preview(job: Job) -> str | None:
    """The job's preview.jpg relative to the share root (where STATUS.html is), if it has one."""
    path = job.path / "preview.jpg"
    return f"{job.path.parent.name}/{job.path.name}/preview.jpg" if path.is_file() else None


def _worker(beat: heartbeat.Heartbeat, now: float) -> dict[str, Any]:
    return {"host": beat.host, "worker": beat.worker, "pid": beat.pid, "phase": beat.phase, "job": beat.job,
            "chunk": beat.progress.chunk, "chunks": beat.progress.chunks, "fps": beat.progress.fps,
            "eta_s": beat.progress.eta_s,
            "gpu": beat.extra.get("gpu") if isinstance(beat.extra, dict) else None,
            "last_progress_age_s": round(now - beat.progress_at, 1),
            "last_heartbeat_age_s": round(now - beat.written_at, 1)}


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _recent(jobs: list[Job], limit: int) -> list[Job]:
    return sorted(jobs, key=lambda job: _mtime(job.path), reverse=True)[:limit]


def _count(share: Share, state: JobState) -> int:
    try:
        with os.scandir(share.folder(state)) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except OSError:
        return 0


def _inbox_count(share: Share) -> int:
    try:
        with os.scandir(share.inbox) as it:
            return sum(1 for e in it if e.name.lower().endswith(".toml") or e.is_dir())
    except OSError:
        return 0


def _spec(job: Job) -> dict[str, Any]:
    data = _read(job.path / "job.json")
    return data or {}


_read = atomic.read_dict
