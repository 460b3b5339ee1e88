"""Several workers and hosts on one share: rename claims, leases judged by the share's clock, takeovers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Roles, drop_job, entries, env_for, rendering, stage_job, wait_for

from daemon.core import lease, state
from daemon.core.job import Job
from daemon.core.share import Share
from daemon.core.state import JobState
from daemon.worker import claim


def claims_in(job_dir: Path) -> list[dict[str, object]]:
    lines = [json.loads(x) for x in (job_dir / "history.jsonl").read_text().splitlines()]
    return [x for x in lines if x.get("to") == "processing"]


@pytest.mark.slow  # about 4 minutes on 2 cores, longer on a loaded box
@pytest.mark.timeout(1500)
def test_four_workers_race_over_500_jobs_and_each_is_done_once(root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_INTAKE_SETTLE_S="0.2")
    roles.start("intake", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    tiny = media_dir.parent / "tiny.mp4"
    if not tiny.exists():
        os.system(f"ffmpeg -v error -y -f lavfi -i color=c=gray:s=64x64:r=25 -t 0.2 -pix_fmt yuv420p {tiny}")
    audio = media_dir / "short.wav"
    for i in range(500):
        drop_job(root, f"m{i:03d}", audio, tiny)
    for n in range(4):
        roles.start("worker", "--name", f"w{n}", env=env)
    # a hang guard, not a speed claim: about 4 minutes alone, much longer beside other work on 2 cores,
    # so it fails only when no job finishes for two minutes
    finished, last = 0, time.monotonic()
    while finished < 500:
        now = len(entries(root / "done")) + len(entries(root / "failed"))
        if now > finished:
            finished, last = now, time.monotonic()
        assert time.monotonic() - last < 120, f"no job finished for 120 s ({finished} of 500 done)"
        time.sleep(1.0)
    assert entries(root / "failed") == []
    owners: dict[str, int] = {}
    for job in entries(root / "done"):
        folder = root / "done" / job
        claims = claims_in(folder)
        assert len(claims) == 1, f"{job} claimed {len(claims)} times"
        owners[str(claims[0]["reason"])] = owners.get(str(claims[0]["reason"]), 0) + 1
        assert len([p for p in folder.iterdir() if p.suffix == ".mp4"]) == 1
    assert len(owners) == 4, owners


def _host_a_with_a_job(root: Path, media_dir: Path, roles: Roles) -> tuple[dict[str, str], subprocess.Popen[bytes]]:
    """Intake and host A's worker (2 s leases) with the 40 s talk job claimed by host A: (env, its worker)."""
    base = env_for(root, LIPSYNCD_WORKER_LEASE_S="2")
    owner = roles.intake_and_worker(root, dict(base, LIPSYNCD_GENERAL_HOST_NAME="hostA"))
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    wait_for(lambda: any((root / "processing").glob("*@hostA*")), 60, "host A to claim")
    return base, owner


def test_paused_owner_loses_its_job_and_exactly_one_result_is_published(root: Path, media_dir: Path,
                                                                       roles: Roles) -> None:
    base, owner = _host_a_with_a_job(root, media_dir, roles)
    wait_for(lambda: any(rendering(j) for j in (root / "processing").glob("*@hostA*")), 60, "host A to render")
    os.killpg(owner.pid, signal.SIGSTOP)  # the whole host A pauses (worker and its ffmpeg)
    roles.start("worker", env=dict(base, LIPSYNCD_GENERAL_HOST_NAME="hostB"))
    wait_for(lambda: len(entries(root / "done")) == 1, 120, "host B to take over and finish")
    os.killpg(owner.pid, signal.SIGCONT)
    wait_for(lambda: "discarding our output" in roles.log_of(owner), 60, "host A to notice it lost the job")
    time.sleep(1.0)
    assert owner.poll() is None, "the old owner should carry on with other work"
    [job] = entries(root / "done")
    folder = root / "done" / job
    assert [p.name for p in folder.iterdir() if p.suffix == ".mp4"] == ["talk.mp4"]
    report = json.loads((folder / "report.json").read_text())
    assert report["attempts"] == 2
    assert [c["reason"] for c in claims_in(folder)] == ["claimed by hostA/gpu0", "claimed by hostB/gpu0"]
    assert entries(root / "processing") == [] and entries(root / "staging") == []


def _staged_then_claimed(root: Path, host: str) -> Job:
    stage_job(root)
    ident = lease.Identity(host=host, pid=999_999, pid_start=1.0, boot_id="b", worker="gpu0")
    job = claim.Queue(root).claim(ident)
    assert job is not None
    return job


def test_leases_are_judged_by_share_time_not_by_skewed_local_clocks(root: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    job = _staged_then_claimed(root, host="hostA")
    # the owner's clock was 5 hours ahead: the lease content says so, the share's mtime does not
    data = json.loads((job.path / "lease.json").read_text())
    data["claimed_at"] += 5 * 3600
    (job.path / "lease.json").write_text(json.dumps(data))
    share = Share(root)
    me = lease.Identity(host="hostB", pid=os.getpid(), pid_start=0.0, boot_id="", worker="gpu0")
    real_time = time.time
    for skew in (-5 * 3600, 0, 5 * 3600):  # our own clock may be far off either way
        monkeypatch.setattr(time, "time", lambda s=skew: real_time() + s)
        assert claim.recover(share, me, max_attempts=3, lease_s=60, language="en") == []
    assert state.jobs_in(root, JobState.PROCESSING)
    old = share.now() - 120
    os.utime(job.path / "lease.json", (old, old))  # not refreshed for 2 minutes by the share's clock
    monkeypatch.setattr(time, "time", lambda: real_time() - 5 * 3600)
    [moved] = claim.recover(share, me, max_attempts=3, lease_s=60, language="en")
    assert moved.state is JobState.STAGING and moved.attempt() == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime (Debian package) not installed")
def test_worker_with_a_clock_hours_ahead_leaves_fresh_leases_alone(root: Path, media_dir: Path,
                                                                   roles: Roles) -> None:
    """A real worker process under faketime +5h must not steal a job whose owner refreshes its lease."""
    base, owner = _host_a_with_a_job(root, media_dir, roles)
    skewed = dict(base, LIPSYNCD_GENERAL_HOST_NAME="hostB", FAKETIME="+5h",
                  LD_PRELOAD="/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
    thief = roles.start("worker", env=skewed)
    beat = root / ".lipsyncd" / "workers" / "hostB--gpu0.json"
    wait_for(beat.exists, 30, "the skewed worker's heartbeat")
    assert json.loads(beat.read_text())["written_at"] > time.time() + 4 * 3600, "faketime did not apply"
    wait_for(lambda: len(entries(root / "done")) == 1, 120, "the job to finish")
    [job] = entries(root / "done")
    assert [c["reason"] for c in claims_in(root / "done" / job)] == ["claimed by hostA/gpu0"]
    assert owner.poll() is None and thief.poll() is None


def test_ambiguous_rename_error_is_resolved_by_the_destination(root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    Share(root).prepare()
    (root / "staging" / "j2").mkdir()
    real_rename = os.rename

    def rename_then_eio(src: str, dst: str) -> None:
        real_rename(src, dst)  # the NFS server did it, then the reply was lost
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(state.os, "rename", rename_then_eio)
    staged = Job(root, JobState.STAGING, root / "staging" / "j2")
    moved = state.move(staged, JobState.PROCESSING, "claim", owner="h.1.a")
    assert moved.path.is_dir() and not (root / "staging" / "j2").exists()
    (root / "staging" / "j3").mkdir()

    def eio(src: str, dst: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(state.os, "rename", eio)
    with pytest.raises(state.ShareUnreachable):
        state.move(Job(root, JobState.STAGING, root / "staging" / "j3"), JobState.PROCESSING, "claim", owner="h.1.b")
    assert (root / "staging" / "j3").is_dir()
