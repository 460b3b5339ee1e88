"""One grep per job: role logs and job.log lines about a job start with its id; warnings land in the shared
errors log; the worker publishes progress.json while it renders. Real intake, worker and watchdog processes."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from conftest import Roles, drop_job, entries, env_for, wait_for

HEADER = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) (?:(\S+) )?([\w-]+)\[\d+\] (\S+): (.*)$")


def test_every_line_about_a_job_starts_with_its_id_and_warnings_reach_errors_log(
        root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_WATCHDOG_INTERVAL_S="0.2", LIPSYNCD_WATCHDOG_PROCESS_MANAGER="none",
                  LIPSYNCD_WATCHDOG_GPU_CHECK="false", LIPSYNCD_WATCHDOG_FAILED_WINDOW_S="0")
    watchdog = roles.start("watchdog", env=env)
    wait_for(lambda: (root / ".lipsyncd" / "roles" / "watchdog.json").exists(), 30, "the watchdog's first pass")
    intake = roles.start("intake", env=env)
    worker = roles.start("worker", env=env)
    drop_job(root, "good", media_dir / "a.wav", media_dir / "v.mp4")
    drop_job(root, "nopicture", media_dir / "a.wav", media_dir / "a.wav")  # fails in the worker
    (root / "inbox" / "typo.toml").write_text('audio = "a.wav\n')  # rejected by intake
    wait_for(lambda: len(entries(root / "done")) == 1 and len(entries(root / "failed")) == 2, 60, "all outcomes")
    ids = [*entries(root / "done"), *entries(root / "failed")]
    wait_for(lambda: all(j in roles.log_of(watchdog) for j in entries(root / "failed")), 20,
             "the watchdog to notice the failures")

    about = 0
    for proc in (intake, worker, watchdog):
        for line in roles.log_of(proc).splitlines():
            match = HEADER.match(line)
            if match is None or match.group(4) == "daemon.sentinel.alerts.outbox":
                continue  # alert bodies (multi-line, about workers and batches) are not job log lines
            message = match.group(5)
            for job in ids:
                if job in message:
                    about += 1
                    assert message.startswith(f"{job}: "), line
    assert about >= 6  # accepted, rejected, claimed, done, failed, the watchdog's failure lines

    for state, job in [("done", j) for j in entries(root / "done")] + [("failed", j) for j in entries(root / "failed")]:
        lines = (root / state / job / "job.log").read_text().splitlines()
        assert lines and all(line.startswith(f"{job}: ") for line in lines), lines

    errors = (root / ".lipsyncd" / "logs" / socket.gethostname() / "errors.log").read_text().splitlines()
    parsed = [HEADER.match(line) for line in errors]
    heads = [m for m in parsed if m is not None]
    assert heads and all(m.group(1) in ("WARNING", "ERROR", "CRITICAL") for m in heads)
    assert {m.group(3) for m in heads} >= {"intake", "worker", "watchdog"}
    assert all(m.group(2) == socket.gethostname() for m in heads)
    nopicture = next(j for j in entries(root / "failed") if j.startswith("nopicture"))
    typo = next(j for j in entries(root / "failed") if j.startswith("typo"))
    assert any(m.group(5).startswith(f"{nopicture}: failed") for m in heads)
    assert any(m.group(5).startswith(f"{typo}: rejected") for m in heads)
    good = entries(root / "done")[0]
    assert not any(good in line for line in errors)  # a job that went well is not an error


@pytest.mark.slow
def test_worker_publishes_progress_json_while_rendering_and_clears_it_when_done(
        root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root)
    roles.start("intake", env=env)
    roles.start("worker", env=env)
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")  # a few seconds of copy encoding
    seen: list[dict[str, object]] = []

    def progress_seen() -> bool:
        for job in (root / "processing").glob("*@*"):
            try:
                seen.append(json.loads((job / "progress.json").read_text()))
            except (OSError, ValueError):
                pass
        return len(entries(root / "done")) == 1

    wait_for(progress_seen, 90, "the job to finish", interval=0.05)
    job = entries(root / "done")[0]
    assert seen, "no progress.json was seen while the job ran"
    percents = [float(p["percent"]) for p in seen if p.get("percent") is not None]  # type: ignore[arg-type]
    assert percents and 0 < max(percents) <= 100 and percents == sorted(percents)
    assert all(p["job"] == job and p["attempt"] == 1 for p in seen)
    # 40 s of speech at the video's 25 fps = 1000 frames in chunks of media.chunk_frames = 250; before the
    # plan exists (probing) a progress file says 0 chunks
    planned = [p for p in seen if p["chunks"]]
    assert planned and all(p["chunks"] == 4 for p in planned), seen[:3]
    assert any(p["eta_s"] is not None for p in seen)
    assert not (root / "done" / job / "progress.json").exists()
