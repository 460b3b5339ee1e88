"""Retention with an injected clock on real folders: what expires goes, everything else stays untouched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from daemon.core import atomic, report
from daemon.core.config import RetentionConfig
from daemon.core.share import Share
from daemon.housekeeping.retention import Retention

NOW = 1_800_000_000.0
DAY = 86400.0
YEAR_AGO = NOW - 365 * DAY


def age(path: Path, when: float) -> None:
    """Set mtime (and atime) of `path` and everything under it to `when`."""
    for dirpath, dirs, files in os.walk(path, topdown=False):
        for name in [*files, *dirs]:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when))


def finished_job(root: Path, state: str, job_id: str, finished_at: float) -> Path:
    path = root / state / job_id
    (path / "inputs").mkdir(parents=True)
    (path / "inputs" / "speech.wav").write_bytes(b"RIFF" + job_id.encode())
    if state == "done":
        report.write_success(path, job_id=job_id, output="r.mp4", inputs={}, attempts=1,
                             timings={"finished_at": finished_at})
        (path / "r.mp4").write_bytes(b"result")
    else:
        report.write_failure(path, job_id=job_id, code="media_invalid", params={"name": "x", "detail": "y"},
                             language="en", inputs={}, attempts=1, timings={"finished_at": finished_at})
    age(path, finished_at)  # file times agree with the report, as they would in real life
    return path


def snapshot_tree(folder: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def untouchable(root: Path) -> None:
    """Year-old content in inbox/, staging/ and processing/, including partial outputs: never ours."""
    (root / "inbox" / "old.wav").write_bytes(b"producer audio")
    (root / "inbox" / ".old.mp4.part").write_bytes(b"a producer's copy in progress")
    staged = root / "staging" / "queued-1"
    (staged / "inputs").mkdir(parents=True)
    (staged / "inputs" / "v.mp4").write_bytes(b"video")
    running = root / "processing" / "running-1@h.1.abc"
    running.mkdir()
    (running / ".out.a1.part.mp4").write_bytes(b"half a result")
    for folder in ("inbox", "staging", "processing"):
        age(root / folder, YEAR_AGO)


def test_expired_done_and_failed_jobs_go_and_nothing_else(root: Path) -> None:
    Share(root).prepare()
    finished_job(root, "done", "done-old", NOW - 31 * DAY)
    finished_job(root, "done", "done-young", NOW - 29 * DAY)
    finished_job(root, "failed", "failed-old", NOW - 91 * DAY)
    finished_job(root, "failed", "failed-young", NOW - 31 * DAY)  # failed/ is kept longer than done/
    untouchable(root)
    before = {f: snapshot_tree(root / f) for f in ("inbox", "staging", "processing")}
    young = {name: snapshot_tree(root / state / name) for state, name in
             (("done", "done-young"), ("failed", "failed-young"))}

    sweep = Retention(Share(root), RetentionConfig(done_days=30, failed_days=90), clock=lambda: NOW).sweep()

    assert sorted(sweep.jobs) == ["done-old", "failed-old"]
    assert sorted(os.listdir(root / "done")) == ["done-young"]
    assert sorted(os.listdir(root / "failed")) == ["failed-young"]
    assert {f: snapshot_tree(root / f) for f in ("inbox", "staging", "processing")} == before
    assert {name: snapshot_tree(root / state / name) for state, name in
            (("done", "done-young"), ("failed", "failed-young"))} == young
    assert not any((root / ".lipsyncd" / "trash").iterdir())  # deleted through the trash, emptied
    assert sweep.freed_bytes > 0


def test_zero_days_keeps_jobs_forever(root: Path) -> None:
    Share(root).prepare()
    finished_job(root, "done", "ancient", NOW - 3650 * DAY)
    finished_job(root, "failed", "ancient-f", NOW - 3650 * DAY)
    sweep = Retention(Share(root), RetentionConfig(done_days=0, failed_days=0), clock=lambda: NOW).sweep()
    assert sweep.jobs == []
    assert os.listdir(root / "done") == ["ancient"] and os.listdir(root / "failed") == ["ancient-f"]


def test_a_job_without_report_ages_by_its_folder_time(root: Path) -> None:
    Share(root).prepare()
    old = root / "done" / "no-report-old"
    old.mkdir()
    (old / "x.mp4").write_bytes(b"x")
    age(old, NOW - 40 * DAY)
    young = root / "done" / "no-report-young"
    young.mkdir()
    age(young, NOW - 2 * DAY)
    Retention(Share(root), RetentionConfig(done_days=30), clock=lambda: NOW).sweep()
    assert os.listdir(root / "done") == ["no-report-young"]


def test_stale_leftovers_go_young_ones_and_planned_transactions_stay(root: Path) -> None:
    Share(root).prepare()
    internal = root / ".lipsyncd"
    job = finished_job(root, "failed", "failed-recent", NOW - 1 * DAY)
    (job / ".lesson.a1.part.mp4").write_bytes(b"partial of attempt 1")
    age(job / ".lesson.a1.part.mp4", NOW - 30 * 3600)
    (job / ".lesson.a2.part.mp4").write_bytes(b"partial of attempt 2")
    age(job / ".lesson.a2.part.mp4", NOW - 2 * 3600)
    (internal / "tmp" / "old-scratch").write_bytes(b"x")
    age(internal / "tmp" / "old-scratch", NOW - 48 * 3600)
    (internal / "tmp" / "new-scratch").write_bytes(b"x")
    age(internal / "tmp" / "new-scratch", NOW - 3600)
    (internal / "roles" / ".intake.json.123.0badcafe.tmp").write_bytes(b"{")
    age(internal / "roles" / ".intake.json.123.0badcafe.tmp", NOW - 48 * 3600)
    abandoned = internal / "intake" / "txn-abandoned"
    (abandoned / "job-a").mkdir(parents=True)
    atomic.write_json(abandoned / "job-a" / "job.json", {"id": "job-a"})
    age(abandoned, NOW - 48 * 3600)
    planned = internal / "intake" / "txn-planned"
    planned.mkdir()
    atomic.write_json(planned / "plan.json", {"txn": "txn-planned", "jobs": [], "ops": []})
    age(planned, NOW - 48 * 3600)
    fresh = internal / "intake" / "txn-fresh"
    fresh.mkdir()
    age(fresh, NOW - 60)
    untouchable(root)
    before = {f: snapshot_tree(root / f) for f in ("inbox", "staging", "processing")}

    Retention(Share(root), RetentionConfig(temp_hours=24), clock=lambda: NOW).sweep()

    assert sorted(p.name for p in job.iterdir() if p.name.startswith(".")) == [".lesson.a2.part.mp4"]
    assert (job / "error.txt").exists() and (job / "inputs" / "speech.wav").exists()
    assert sorted(os.listdir(internal / "tmp")) == ["new-scratch"]
    assert not (internal / "roles" / ".intake.json.123.0badcafe.tmp").exists()
    assert sorted(os.listdir(internal / "intake")) == ["txn-fresh", "txn-planned"]
    assert {f: snapshot_tree(root / f) for f in ("inbox", "staging", "processing")} == before


def test_face_cache_is_trimmed_oldest_first_to_its_budget(root: Path) -> None:
    Share(root).prepare()
    cache = root / ".lipsyncd" / "facecache"
    cache.mkdir()
    for i in range(5):
        path = cache / f"video{i}.npy"
        path.write_bytes(b"\0" * 1_000_000)
        os.utime(path, (NOW - (5 - i) * 3600, NOW - (5 - i) * 3600))  # video4 is the newest
    Retention(Share(root), RetentionConfig(facecache_max_gb=0.0025), clock=lambda: NOW).sweep()
    assert sorted(os.listdir(cache)) == ["video3.npy", "video4.npy"]


def test_a_crash_mid_delete_leaves_no_half_job_and_the_next_sweep_finishes(root: Path) -> None:
    Share(root).prepare()
    trash = root / ".lipsyncd" / "trash"
    trash.mkdir()
    (trash / "done-old.1a2b3c" / "inputs").mkdir(parents=True)  # renamed away, then the process died
    (trash / "done-old.1a2b3c" / "inputs" / "a.wav").write_bytes(b"x")
    Retention(Share(root), RetentionConfig(), clock=lambda: NOW).sweep()
    assert list(trash.iterdir()) == []
