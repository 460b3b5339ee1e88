"""A late mount is not a configuration error: a missing root, or an fstab mount point that is not mounted,
makes intake and workers wait (saying why), then exit 70 so the manager tries again; never 78.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, env_for

from daemon.core.errors import ShareUnreachable
from daemon.core.mount import missing, wait_for_root


def test_missing_root_exits_70_after_the_wait_with_a_clear_log_line(tmp_path: Path) -> None:
    root = tmp_path / "not-mounted-yet"
    env = env_for(root, LIPSYNCD_SHARE_MOUNT_WAIT_S="1")
    for role in (["intake"], ["worker", "--gpu", "0"]):
        done = subprocess.run([sys.executable, "-m", "daemon", *role], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 70, done.stderr
        assert f"share root {root} does not exist: waiting for it" in done.stderr, done.stderr
        assert "configuration error" not in done.stderr
    assert not root.exists()  # nothing was created in its place


def test_a_root_that_appears_during_the_wait_is_used(tmp_path: Path) -> None:
    root = tmp_path / "late"
    threading.Timer(1.0, root.mkdir).start()
    started = time.monotonic()
    wait_for_root(root, 60)
    assert root.is_dir() and time.monotonic() - started < 30


def test_an_fstab_mount_point_that_is_not_mounted_counts_as_missing(tmp_path: Path) -> None:
    point = tmp_path / "srv"
    (point / "lipsyncd").mkdir(parents=True)  # the empty folders exist; the mount is late
    fstab, mounts = tmp_path / "fstab", tmp_path / "mounts"
    fstab.write_text(f"# comment\nnas:/export {point} nfs defaults,_netdev 0 0\n")
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n")
    assert "not mounted yet" in missing(point / "lipsyncd", fstab, mounts)
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nnas:/export {point} nfs rw 0 0\n")
    assert missing(point / "lipsyncd", fstab, mounts) == ""
    with pytest.raises(ShareUnreachable, match="exiting 70"):
        wait_for_root(point / "nope", 0)
