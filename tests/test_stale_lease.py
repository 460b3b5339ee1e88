"""A job requeued from processing/ keeps the lease.json of the claim that ended; between the next claim's
rename and its own lease write, recovery must not judge the new claim by that stale lease (found by the
fault runner: a worker's recovery pass requeued a job another live worker had just claimed)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from conftest import stage_job

from daemon.core import lease, state
from daemon.core.job import Job
from daemon.core.share import Share
from daemon.core.state import JobState
from daemon.worker import claim


def _staged_with_stale_lease(root: Path, stale: lease.Identity) -> Job:
    folder = stage_job(root)
    lease.write(folder, stale, 1)  # left behind when the earlier claim put the job back
    return Job(root=root, state=JobState.STAGING, path=folder)


def _claim_without_lease_yet(job: Job, claimer: lease.Identity) -> Job:
    """The claim's rename has happened; its lease write has not (the window the fault run hit)."""
    return state.move(job, JobState.PROCESSING, "claimed", owner=claimer.owner_token())


def test_stale_lease_of_a_dead_local_owner_does_not_orphan_a_live_claim(root: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = socket.gethostname()
    job = _staged_with_stale_lease(root, lease.Identity(host, gone.pid, 1.0, "b", "gpu1"))
    claimed = _claim_without_lease_yet(job, lease.this_process("gpu0"))  # we are the live claimer
    other = lease.Identity(host, os.getpid() + 1, 0.0, "b", "gpu1")
    assert claim.recover(Share(root), other, max_attempts=3, lease_s=60, language="en") == []
    assert claimed.path.is_dir(), "a live claim was taken over because of its predecessor's lease"


def test_stale_lease_from_long_ago_does_not_expire_a_fresh_remote_claim(root: Path) -> None:
    job = _staged_with_stale_lease(root, lease.Identity("hostA", 888_888, 1.0, "b", "gpu1"))
    old = time.time() - 3600
    os.utime(job.path / "lease.json", (old, old))
    claimed = _claim_without_lease_yet(job, lease.Identity("hostA", 999_999, 1.0, "b", "gpu0"))
    me = lease.Identity("hostB", os.getpid(), 0.0, "", "gpu0")
    assert claim.recover(Share(root), me, max_attempts=3, lease_s=60, language="en") == []
    assert claimed.path.is_dir(), "a fresh claim on another host was judged by the stale lease's age"
