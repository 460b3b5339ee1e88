"""Two hosts on one share, for real: a second worker through an sshfs mount (the field lab), its clock
200 s behind; the mount killed mid-job. Every job must end exactly once, with a true reason: a skewed
host keeps the job it renews, a dead one loses it after lease_s, a dead mount is the share's fault."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import fieldlab
import pytest
from conftest import Roles, drop_job, entries, env_for, rendering, wait_for

# slow; the generous timeout is for a loaded 2-core machine (sshfs renders take minutes there)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

LEASE_S = 6.0
SKEW_S = -200


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[fieldlab.Lab]:
    fieldlab.skip_unless_available()
    folder = tmp_path / "lab"
    folder.mkdir()
    lab = fieldlab.Lab(folder)
    yield lab
    lab.close()


def _events(folder: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]


def _claims(folder: Path) -> list[str]:
    return [str(e["reason"]) for e in _events(folder) if e.get("to") == "processing"]


def _hosts(root: Path, mnt: Path) -> tuple[dict[str, str], dict[str, str]]:
    near = env_for(root, LIPSYNCD_WORKER_LEASE_S=str(LEASE_S), LIPSYNCD_GENERAL_HOST_NAME="near")
    far = env_for(mnt, LIPSYNCD_WORKER_LEASE_S=str(LEASE_S), LIPSYNCD_GENERAL_HOST_NAME="far")
    return near, far


def _far_renders(root: Path) -> Path:
    wait_for(lambda: any(rendering(j) for j in (root / "processing").glob("*@far*")), 180, "the far host to render")
    [folder] = (root / "processing").glob("*@far*")
    return folder


def _one_job_done(root: Path, name: str) -> Path:
    done = [j for j in entries(root / "done") if j.startswith(name)]
    assert len(done) == 1, done
    folder = root / "done" / done[0]
    assert [p.name for p in folder.iterdir() if p.suffix == ".mp4"] == [f"{name}.mp4"]
    return folder


def test_worker_on_a_skewed_mount_keeps_its_job_and_a_dead_one_loses_it_after_lease_s(
        root: Path, tmp_path: Path, media_dir: Path, roles: Roles, lab: fieldlab.Lab) -> None:
    mnt = tmp_path / "far"
    lab.mount(root, mnt, SKEW_S)
    near, far = _hosts(root, mnt)
    roles.start("intake", env=near)
    wait_for(lambda: (root / "inbox").is_dir(), 30, "share folders")
    drop_job(root, "kept", media_dir / "talk.wav", media_dir / "talk.mp4")
    far_worker = roles.start("worker", env=far)
    _far_renders(root)
    near_worker = roles.start("worker", env=near)  # judges far's lease every lease_s / 4 from now on
    drop_job(root, "local", media_dir / "a.wav", media_dir / "v.mp4")
    wait_for(lambda: len(entries(root / "done")) == 2, 300, "both jobs to finish", interval=0.5)
    kept = _one_job_done(root, "kept")
    assert _claims(kept) == ["claimed by far/gpu0"], "the live far host's job was taken over"
    assert _claims(_one_job_done(root, "local")) == ["claimed by near/gpu0"]
    assert "taken over" not in roles.log_of(near_worker) + roles.log_of(far_worker)

    # the far worker dies mid-job (its whole process group, as a host losing power): its lease ages
    _stop(near_worker)  # so that the far host claims the next job
    drop_job(root, "orphan", media_dir / "talk.wav", media_dir / "talk.mp4")
    _far_renders(root)
    near_worker = roles.start("worker", env=near)
    wait_for(lambda: "ready" in roles.log_of(near_worker), 60, "the near worker to be ready")
    os.killpg(far_worker.pid, signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: any(j.startswith("orphan") for j in entries(root / "done")), 300, "the takeover to finish")
    orphan = _one_job_done(root, "orphan")
    requeued = [e for e in _events(orphan) if e.get("to") == "staging" and e.get("source") == "processing"]
    assert len(requeued) == 1 and "orphaned" in str(requeued[0]["reason"])
    waited = float(str(requeued[0]["t"])) - killed_at
    assert waited >= LEASE_S - 1.5, f"taken over {waited:.1f} s after the owner died (lease {LEASE_S} s)"
    assert _claims(orphan) == ["claimed by far/gpu0", "claimed by near/gpu0"]
    assert json.loads((orphan / "report.json").read_text())["attempts"] == 2
    assert entries(root / "failed") == [] and entries(root / "processing") == []


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)


def test_a_dead_mount_mid_job_is_the_shares_fault_and_the_job_is_taken_over_after_lease_s(
        root: Path, tmp_path: Path, media_dir: Path, roles: Roles, lab: fieldlab.Lab) -> None:
    mnt = tmp_path / "far"
    mount = lab.mount(root, mnt)
    near, far = _hosts(root, mnt)
    roles.start("intake", env=near)
    wait_for(lambda: (root / "inbox").is_dir(), 30, "share folders")
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    far_worker = roles.start("worker", env=far)
    _far_renders(root)
    near_worker = roles.start("worker", env=near)
    mount.kill()  # every call on the mount now fails with ENOTCONN
    died_at = time.time()
    assert far_worker.wait(timeout=120) == 70, roles.log_of(far_worker)
    said = roles.log_of(far_worker)
    assert "the share is unreachable" in said
    for false_story in ("taken over", "discarding", "video_truncated", "cut off", "Traceback"):
        assert false_story not in said, f"the far worker said {false_story!r}:\n{said}"
    wait_for(lambda: len(entries(root / "done")) == 1, 300, "the near worker to take over and finish")
    folder = _one_job_done(root, "talk")
    requeued = [e for e in _events(folder) if e.get("to") == "staging" and e.get("source") == "processing"]
    assert len(requeued) == 1, requeued
    assert float(str(requeued[0]["t"])) - died_at >= LEASE_S - 1.5, "taken over before the lease expired"
    assert _claims(folder) == ["claimed by far/gpu0", "claimed by near/gpu0"]
    assert entries(root / "failed") == [] and entries(root / "processing") == []
    assert "taken over" not in roles.log_of(near_worker).replace("taken over from a dead or expired owner", "")


def test_on_a_fuse_mount_a_folder_on_another_filesystem_is_named_at_start(
        root: Path, tmp_path: Path, roles: Roles, lab: fieldlab.Lab) -> None:
    """Through sshfs every folder reports one st_dev and the server's EXDEV arrives as EPERM: the start-up
    rename probe must still say which folder is on another filesystem, not blame permissions."""
    (root / "done").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root / "done")], check=True)
    try:
        mnt = tmp_path / "far"
        lab.mount(root, mnt)
        assert os.stat(mnt / "done").st_dev == os.stat(mnt).st_dev  # what the st_dev check sees
        worker = roles.start("worker", env=env_for(mnt, LIPSYNCD_GENERAL_HOST_NAME="far"))
        assert worker.wait(timeout=120) == 78
        said = roles.log_of(worker)
        assert "into done/ was refused (Operation not permitted) although both folders are writable" in said
        assert "on another filesystem than" in said and "must be writable" not in said
    finally:
        lab.close()
        subprocess.run(["umount", "-l", str(root / "done")], check=False)


def test_a_poison_folder_seen_through_a_skewed_mount_is_quarantined_once_and_jobs_flow(
        root: Path, tmp_path: Path, media_dir: Path, roles: Roles, lab: fieldlab.Lab) -> None:
    mnt = tmp_path / "far"
    lab.mount(root, mnt, SKEW_S)
    near, far = _hosts(root, mnt)
    roles.start("intake", env=near)
    wait_for(lambda: (root / "staging").is_dir(), 30, "share folders")
    poison = root / "staging" / "half-copied"
    (poison / "inputs").mkdir(parents=True)
    (poison / "inputs" / "talk.wav").write_bytes((media_dir / "talk.wav").read_bytes())
    made_at = time.time()
    drop_job(root, "fine", media_dir / "a.wav", media_dir / "v.mp4")
    workers = [roles.start("worker", env=far), roles.start("worker", env=near)]
    wait_for(lambda: (root / "failed" / "half-copied").is_dir() and len(entries(root / "done")) == 1, 180,
             "the poison folder in failed/ and the real job in done/")
    folder = root / "failed" / "half-copied"
    assert "is not a job the appliance accepted: it has no job.json" in (folder / "error.txt").read_text()
    moves = [e for e in _events(folder) if e.get("event") == "moved"]
    assert [e["to"] for e in moves] == ["processing", "failed"], moves  # claimed once, quarantined once
    quarantined_after = float(str(moves[-1]["t"])) - made_at
    assert quarantined_after >= LEASE_S - 1.5, f"quarantined {quarantined_after:.1f} s after it appeared"
    assert (folder / "inputs" / "talk.wav").read_bytes() == (media_dir / "talk.wav").read_bytes()
    assert [w.poll() for w in workers] == [None, None]
    assert entries(root / "staging") == [] and entries(root / "processing") == []
