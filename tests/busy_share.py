"""A share caught mid-work, built with the core's own writers: queued, running, done and failed jobs,
a worker heartbeat, intake and watchdog status files. Producer-controlled strings carry HTML."""

from __future__ import annotations

import time
from pathlib import Path

from daemon.core import atomic, heartbeat, lease, progress, report
from daemon.core.job import JobSpec
from daemon.core.share import Share

EVIL_BATCH = '<script>alert("batch")</script>'
EVIL_FILE = "<img src=x onerror=alert(1)>.mp4"


def _job(folder: Path, job_id: str, accepted_at: float, batch: str = "", output: str = "out.mp4") -> Path:
    path = folder / job_id
    (path / "inputs").mkdir(parents=True)
    spec = JobSpec(id=job_id, batch=batch or job_id, ticket="inputs/t.toml", audio="inputs/a.wav",
                   video="inputs/v.mp4", output=output, engine="copy", accepted_at=accepted_at, key="k")
    atomic.write_json(path / "job.json", spec.to_json())
    atomic.write_json(path / "attempt.json", {"attempt": 1})
    return path


def build(root: Path, now: float | None = None) -> dict[str, str]:
    """Populate `root`; returns the job ids by role in the picture."""
    now = time.time() if now is None else now
    Share(root).prepare()
    ids = {"queued_old": "lesson01-20260101-000000.000-aaaaaa", "queued_new": "lesson02-20260101-000100.000-bbbbbb",
           "running": "lecture-20260101-000200.000-cccccc", "done": "welcome-20260101-000300.000-dddddd",
           "failed": "broken-20260101-000400.000-eeeeee"}
    _job(root / "staging", ids["queued_old"], now - 600, batch=EVIL_BATCH)
    _job(root / "staging", ids["queued_new"], now - 60)
    running = _job(root / "processing", ids["running"], now - 900, output="lecture.mp4")
    running = running.rename(root / "processing" / f"{ids['running']}@gpuhost.4242.abcdef")
    ident = lease.Identity(host="gpuhost", pid=4242, pid_start=1.0, boot_id="b", worker="gpu0")
    lease.write(running, ident, 1)
    news = progress.Progress("render", chunk=3, chunks=8, frames_done=300, frames_total=800, fps=24.5, eta_s=204.0)
    progress.write(running, progress.record(ids["running"], 1, news, now=now))
    heartbeat.write(root / ".lipsyncd", heartbeat.Heartbeat(
        host="gpuhost", worker="gpu0", pid=4242, pid_start=1.0, phase="working", job=ids["running"],
        progress=news, progress_at=now - 2, written_at=now - 2, extra={"gpu": "0"}))
    heartbeat.write(root / ".lipsyncd", heartbeat.Heartbeat(
        host="gpuhost", worker="gpu1", pid=4243, pid_start=1.0, phase="idle", progress_at=now - 5,
        written_at=now - 5))
    done = _job(root / "done", ids["done"], now - 3600, output="welcome.mp4")
    report.write_success(done, job_id=ids["done"], output="welcome.mp4", inputs={}, attempts=1,
                         timings={"accepted_at": now - 3600, "claimed_at": now - 3500, "render_s": 95.0,
                                  "finished_at": now - 3400})
    failed = _job(root / "failed", ids["failed"], now - 1800)
    report.write_failure(failed, job_id=ids["failed"], code="media_invalid",
                         params={"name": EVIL_FILE, "detail": "it has no picture"}, language="en", inputs={},
                         attempts=1, timings={"finished_at": now - 1700})
    atomic.write_json(root / ".lipsyncd" / "roles" / "intake.json",
                      {"host": "gpuhost", "pid": 1, "written_at": now, "paused": False, "pause_reason": "",
                       "share_ok": True})
    atomic.write_json(root / ".lipsyncd" / "roles" / "watchdog.json", {
        "host": "gpuhost", "written_at": now, "share_ok": True,
        "channels": {"dingtalk": {"state": "ok", "sent": 7, "failed": 0, "last_error": ""},
                     "feishu": {"state": "broken", "sent": 0, "failed": 2,
                                "last_error": "19021 sign match fail <b>bold</b>"}},
        "gpus": [{"host": "gpuhost", "index": 0, "name": "NVIDIA H100", "uuid": "GPU-1", "used": 21e9,
                  "total": 80e9}]})
    return ids
