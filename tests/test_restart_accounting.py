"""A worker the watchdog restarted for a stall and a worker that crashed are counted apart; a job fails
only with the true reason: "no progress, the machine may be overloaded", never "the input" without evidence."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import stage_job

from daemon.core import history, state
from daemon.core.job import Job
from daemon.core.state import JobState
from daemon.worker import claim

MAX_ATTEMPTS = 3


def _claimed(job: Job, n: int) -> Job:
    return state.move(job, JobState.PROCESSING, f"claimed by h1/gpu0 ({n})", owner=f"h1.{4000 + n}.ab12")


def _end_attempt(job: Job, n: int, stalled: bool) -> Job:
    """Claim, (the watchdog orders a restart), the owner dies, recovery decides."""
    held = _claimed(job, n)
    if stalled:
        history.append(held.path, "watchdog_restart", by="watchdog", worker="gpu0", phase="working",
                       quiet_s=301.5, limit_s=300.0, manager="up")
    return claim.requeue_after_crash(held, MAX_ATTEMPTS, "en")


def test_watchdog_restarts_fail_the_job_as_no_progress_not_as_a_bad_input(root: Path) -> None:
    job = Job(root=root, state=JobState.STAGING, path=stage_job(root))
    for n in range(1, MAX_ATTEMPTS):
        job = _end_attempt(job, n, stalled=True)
        assert job.state is JobState.STAGING, f"failed after {n} stall restarts"
    job = _end_attempt(job, MAX_ATTEMPTS, stalled=True)
    assert job.state is JobState.FAILED
    text = (job.path / "error.txt").read_text()
    assert "restarted 3 times because it made no progress on this job for 302 s (the limit is 300 s)" in text
    assert "The input is not known to be at fault" in text and "overloaded" in text
    assert "may trigger" not in text and "input may" not in text.lower()
    report = json.loads((job.path / "report.json").read_text())
    assert report["code"] == "worker_stalled" and report["attempts"] == 3


def test_crashes_and_stall_restarts_have_separate_budgets(root: Path) -> None:
    job = Job(root=root, state=JobState.STAGING, path=stage_job(root))
    for n, stalled in enumerate([True, False, True, False], start=1):  # 2 stalls + 2 crashes: below both
        job = _end_attempt(job, n, stalled)
        assert job.state is JobState.STAGING, f"failed after attempt {n}"
    assert json.loads((job.path / "attempt.json").read_text()) == {"attempt": 5, "stalls": 2}
    job = _end_attempt(job, 5, stalled=False)  # the third crash
    assert job.state is JobState.FAILED
    text = (job.path / "error.txt").read_text()
    assert "stopped unexpectedly 3 times" in text and "not restarted for a stall" in text
    assert json.loads((job.path / "report.json").read_text())["code"] == "worker_died"


def test_a_restart_order_of_an_earlier_attempt_does_not_count_for_a_later_crash(root: Path) -> None:
    job = Job(root=root, state=JobState.STAGING, path=stage_job(root))
    job = _end_attempt(job, 1, stalled=True)
    held = _claimed(job, 2)  # the old order sits in history.jsonl before this claim
    job = claim.requeue_after_crash(held, MAX_ATTEMPTS, "en")
    assert json.loads((job.path / "attempt.json").read_text()) == {"attempt": 3, "stalls": 1}
    assert "owner h1.4002.ab12 gone" in [e["reason"] for e in history.read(job.path) if e.get("to") == "staging"][-1]
