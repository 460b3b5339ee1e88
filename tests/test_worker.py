"""The worker as a real process: outcomes by who is at fault, stops, crashes, recovery, retry."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import REPO, Roles, drop_job, entries, env_for, ffmpeg, rendering, wait_for


def digest_tree(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def processing_job(root: Path) -> Path | None:
    jobs = [p for p in (root / "processing").iterdir() if "@" in p.name] if (root / "processing").is_dir() else []
    return jobs[0] if jobs else None




def test_bad_media_fails_with_reason_and_worker_keeps_running(root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root)
    roles.start("intake", env=env)
    worker = roles.start("worker", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "audioonly", media_dir / "a.wav", media_dir / "a.wav")  # a WAV given as the video
    garbage = media_dir.parent / "garbage.mp4"
    garbage.write_bytes(os.urandom(50_000))
    drop_job(root, "garbage", media_dir / "a.wav", garbage)
    wait_for(lambda: len(entries(root / "failed")) == 2, 60, "both bad jobs in failed/")
    reasons = {j.split("-")[0]: (root / "failed" / j / "error.txt").read_text() for j in entries(root / "failed")}
    assert "contains only sound" in reasons["audioonly"]
    assert "cannot be read as video or audio" in reasons["garbage"]
    assert worker.poll() is None
    drop_job(root, "fine", media_dir / "a.wav", media_dir / "v.mp4")
    wait_for(lambda: len(entries(root / "done")) == 1, 60, "a good job done after the bad ones")
    [done] = entries(root / "done")
    report = json.loads((root / "done" / done / "report.json").read_text())
    assert report["state"] == "done" and (root / "done" / done / report["output"]).stat().st_size > 0
    assert worker.poll() is None


def test_first_sigterm_requeues_the_job_and_exits_0(root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root)
    roles.start("intake", env=env)
    worker = roles.start("worker", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    wait_for(lambda: (job := processing_job(root)) is not None and rendering(job), 60, "the job to render")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, roles.log_of(worker)
    [job] = entries(root / "staging")
    assert json.loads((root / "staging" / job / "attempt.json").read_text())["attempt"] == 1
    assert "stop requested" in (root / "staging" / job / "job.log").read_text()


def test_sigkill_mid_job_then_restart_publishes_exactly_one_result(root: Path, media_dir: Path,
                                                                   roles: Roles) -> None:
    env = env_for(root)
    roles.start("intake", env=env)
    worker = roles.start("worker", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    wait_for(lambda: (job := processing_job(root)) is not None and rendering(job), 60, "the job to render")
    job = processing_job(root)
    assert job is not None
    inputs = digest_tree(job / "inputs")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its ffmpeg child die together
    worker.wait()
    assert not (job / "talk.mp4").exists(), "a partial file sits under the final name"
    roles.start("worker", env=env)
    wait_for(lambda: len(entries(root / "done")) == 1, 120, "the job to finish after the restart")
    [done] = entries(root / "done")
    folder = root / "done" / done
    report = json.loads((folder / "report.json").read_text())
    assert report["attempts"] == 2
    results = [p for p in folder.iterdir() if p.suffix == ".mp4"]
    assert [p.name for p in results] == ["talk.mp4"], "exactly one result, no partial files"
    assert digest_tree(folder / "inputs") == inputs
    assert "back to staging/ for attempt 2" in (folder / "job.log").read_text()
    assert entries(root / "processing") == [] and entries(root / "staging") == []


def test_job_that_kills_its_worker_every_time_fails_after_the_attempt_limit(root: Path, media_dir: Path,
                                                                           roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_WORKER_MAX_ATTEMPTS="2")
    roles.start("intake", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "cursed", media_dir / "talk.wav", media_dir / "talk.mp4")
    for _ in range(2):
        worker = roles.start("worker", env=env)

        def rendering_by_this_worker(worker: subprocess.Popen[bytes] = worker) -> bool:
            job = processing_job(root)
            if job is None or not rendering(job):
                return False
            lease = json.loads((job / "lease.json").read_text() or "{}")
            return bool(lease.get("pid") == worker.pid)

        wait_for(rendering_by_this_worker, 60, "this worker to render the job")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    roles.start("worker", env=env)  # its start-up recovery gives up on the job
    wait_for(lambda: len(entries(root / "failed")) == 1, 60, "the job in failed/")
    [job] = entries(root / "failed")
    assert "stopped unexpectedly 2 times" in (root / "failed" / job / "error.txt").read_text()


def test_missing_ffmpeg_is_an_environment_fault_the_job_waits_in_staging(root: Path, media_dir: Path,
                                                                         roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_MEDIA_FFPROBE="/nonexistent/ffprobe")
    roles.start("intake", env=env)
    worker = roles.start("worker", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "env", media_dir / "a.wav", media_dir / "v.mp4")
    assert worker.wait(timeout=60) == 70
    assert "ffprobe not found" in roles.log_of(worker)
    [job] = entries(root / "staging")
    assert json.loads((root / "staging" / job / "attempt.json").read_text())["attempt"] == 1
    assert entries(root / "failed") == []


def test_retry_moves_a_failed_job_back_and_it_completes(root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_MEDIA_MAX_DURATION_MIN="0.01")  # 0.6 s limit: the 1.5 s speech fails
    roles.start("intake", env=env)
    worker = roles.start("worker", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "again", media_dir / "a.wav", media_dir / "v.mp4")
    wait_for(lambda: len(entries(root / "failed")) == 1, 60, "the job to fail")
    [job] = entries(root / "failed")
    assert "accepts at most" in (root / "failed" / job / "error.txt").read_text()
    worker.kill()
    worker.wait()
    relaxed = env_for(root)
    done = subprocess.run([sys.executable, "-m", "daemon", "retry", job], cwd=REPO, env=relaxed,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    roles.start("worker", env=relaxed)
    wait_for(lambda: entries(root / "done") == [job], 60, "the retried job to finish")
    assert (root / "done" / job / "previous-attempts").is_dir()


def test_two_workers_race_and_each_job_is_done_once(root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root)
    roles.start("intake", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    for i in range(16):
        drop_job(root, f"r{i:02d}", media_dir / "short.wav", media_dir / "v.mp4")
    roles.start("worker", "--name", "w1", env=env)
    roles.start("worker", "--name", "w2", env=env)
    wait_for(lambda: len(entries(root / "done")) == 16, 120, "16 jobs done")
    owners = set()
    for job in entries(root / "done"):
        history = [json.loads(line) for line in (root / "done" / job / "history.jsonl").read_text().splitlines()]
        claims = [h for h in history if h.get("to") == "processing"]
        assert len(claims) == 1, f"{job} was claimed {len(claims)} times"
        owners.add(claims[0]["reason"])
        assert len([p for p in (root / "done" / job).iterdir() if p.suffix == ".mp4"]) == 1
    assert len(owners) == 2, "both workers should have taken part"


def test_result_published_just_before_a_crash_is_finished_not_failed(root: Path, media_dir: Path,
                                                                     roles: Roles) -> None:
    """A worker killed between renaming its result into place and writing report.json: the job is back in
    staging/ with a complete result under its final name. The next worker must finish it, not fail it."""
    env = env_for(root)
    roles.start("intake", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "pub", media_dir / "a.wav", media_dir / "v.mp4")
    wait_for(lambda: len(entries(root / "staging")) == 1, 30, "the job in staging/")
    [job] = entries(root / "staging")
    published = root / "staging" / job / "pub.mp4"
    ffmpeg("-i", str(media_dir / "v.mp4"), "-i", str(media_dir / "a.wav"), "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-c:a", "aac", "-f", "mp4", str(published))
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    roles.start("worker", env=env)
    wait_for(lambda: len(entries(root / "done")) + len(entries(root / "failed")) == 1, 60, "the job to end")
    assert entries(root / "done") == [job], (root / "failed" / job / "error.txt").read_text()
    folder = root / "done" / job
    assert [p.name for p in folder.iterdir() if p.suffix == ".mp4"] == ["pub.mp4"]
    assert hashlib.sha256((folder / "pub.mp4").read_bytes()).hexdigest() == digest, "rendered a second time"
    assert json.loads((folder / "report.json").read_text())["state"] == "done"
