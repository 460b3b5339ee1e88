"""The disk guard on a small real filesystem: intake pauses when the share fills, the watchdog alerts,
retention frees space, intake resumes, and every producer file arrives intact."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_server import ChatServer
from conftest import Roles, drop_job, entries, env_for, wait_for

from daemon.core import report
from daemon.core.share import Share
from daemon.intake.diskguard import DiskGuard

MB = 1_000_000


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB ext4 loop mount (or a 64 MB tmpfs where loop devices are missing)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    image = tmp_path / "share.img"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    made = subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], capture_output=True)
    mounted = made.returncode == 0 and subprocess.run(["mount", "-o", "loop", str(image), str(mnt)],
                                                      capture_output=True).returncode == 0
    if not mounted:
        tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True)
        if tmpfs.returncode != 0:
            pytest.skip(f"neither a loop mount nor tmpfs works here: {tmpfs.stderr.decode()[-200:]}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_guard_pauses_below_and_resumes_only_above_the_upper_threshold(tmp_path: Path) -> None:
    level = {"free": 50 * MB}
    guard = DiskGuard(tmp_path, pause_below_gb=0.030, resume_above_gb=0.040, measure=lambda _p: level["free"])
    assert guard.check() is None
    level["free"] = 29 * MB
    reason = guard.check()
    assert reason is not None and reason.startswith("disk:") and "0.03 GB free" in reason
    level["free"] = 35 * MB  # above the pause line, below the resume line: still paused (no flapping)
    assert guard.check() is not None
    level["free"] = 41 * MB
    assert guard.check() is None and not guard.low
    off = DiskGuard(tmp_path, pause_below_gb=0, resume_above_gb=0, measure=lambda _p: 0)
    assert off.check() is None


def test_full_share_pauses_intake_alerts_and_resumes_after_retention_frees_space(
        small_fs: Path, media_dir: Path, roles: Roles) -> None:
    st = os.statvfs(small_fs)
    assert st.f_blocks * st.f_frsize < 70 * MB  # really the small filesystem, not the host's disk
    root = small_fs / "share"
    root.mkdir()
    Share(root).prepare()
    # ballast: a finished job's big result, so that retention can free the space later
    bulky = root / "done" / "bulky-job"
    bulky.mkdir()
    (bulky / "result.mp4").write_bytes(b"\0" * (free(small_fs) - 22 * MB))
    report.write_success(bulky, job_id="bulky-job", output="result.mp4", inputs={}, attempts=1, timings={})
    assert free(small_fs) < 30 * MB

    chat = ChatServer().start()
    try:
        env = env_for(root, LIPSYNCD_INTAKE_PAUSE_BELOW_FREE_GB="0.030", LIPSYNCD_INTAKE_RESUME_ABOVE_FREE_GB="0.040",
                      LIPSYNCD_STATUS_INTERVAL_S="0.5", LIPSYNCD_RETENTION_INTERVAL_MIN="0.01",
                      LIPSYNCD_RETENTION_DONE_DAYS="30", LIPSYNCD_ALERTS_WEBHOOK_URL=chat.webhook_url,
                      LIPSYNCD_WATCHDOG_INTERVAL_S="0.2", LIPSYNCD_WATCHDOG_PROCESS_MANAGER="none",
                      LIPSYNCD_WATCHDOG_GPU_CHECK="false", LIPSYNCD_WATCHDOG_DISK_FREE_MIN_GB="0.020")
        intake = roles.start("intake", env=env)
        roles.start("watchdog", env=env)
        drop_job(root, "lesson", media_dir / "a.wav", media_dir / "v.mp4")
        originals = {name: sha(root / "inbox" / name) for name in entries(root / "inbox")}

        status = root / ".lipsyncd" / "roles" / "intake.json"
        wait_for(lambda: status.exists() and json.loads(status.read_text())["paused"], 20, "intake to pause")
        assert json.loads(status.read_text())["pause_reason"].startswith("disk:")
        wait_for(lambda: any("Disk almost full" in t for t in chat.texts()), 20, "the disk alert")
        assert any("Intake is paused" in t for t in chat.texts())
        wait_for(lambda: 'id="intake-paused"' in _read(root / "STATUS.html"), 20, "the paused banner")
        assert sorted(entries(root / "inbox")) == sorted(originals)  # the drop waits, untouched
        assert entries(root / "staging") == [] and entries(root / "failed") == []

        # time passes for the ballast job: retention (run by intake) removes it and frees the space
        report.write_success(bulky, job_id="bulky-job", output="result.mp4", inputs={}, attempts=1,
                             timings={"finished_at": 1.0})
        wait_for(lambda: len(entries(root / "staging")) == 1, 30, "intake to resume and accept the drop")
        assert not bulky.exists() and not json.loads(status.read_text())["paused"]
        wait_for(lambda: any(t.startswith("Resolved: Disk almost full") for t in chat.texts()), 20,
                 "the all-clear")
        job = root / "staging" / entries(root / "staging")[0]
        assert {name: sha(job / "inputs" / name) for name in originals} == originals
        assert entries(root / "inbox") == [] and entries(root / "failed") == []
        log = roles.log_of(intake)
        assert "intake paused: disk:" in log and "intake resumed" in log
        assert log.count("intake paused") == 1  # one line per pause, not one per scan
    finally:
        roles.stop_all()
        chat.down()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
