"""The share: folders created when missing; refuse to start across filesystems or when not writable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, env_for

from daemon.core.errors import ConfigError, ShareUnreachable
from daemon.core.share import STATE_FOLDERS, Share

SHM = Path("/dev/shm")


def _other_filesystem(tmp_path: Path) -> Path | None:
    if SHM.is_dir() and os.stat(SHM).st_dev != os.stat(tmp_path).st_dev and os.access(SHM, os.W_OK):
        return SHM
    return None


def test_missing_folders_are_created_and_renames_proven(root: Path) -> None:
    Share(root).prepare()
    for name in STATE_FOLDERS:
        assert (root / name).is_dir()
    assert (root / ".lipsyncd" / "workers").is_dir()
    leftovers = [p for p in root.rglob("*lipsyncd-probe*")]
    assert leftovers == []


def test_missing_root_says_to_mount_the_share(tmp_path: Path) -> None:
    # a late mount is the machine's state, not a config mistake: exit 70, not 78 (issue 14)
    with pytest.raises(ShareUnreachable, match="does not exist: mount the share"):
        Share(tmp_path / "not-mounted").prepare()


def test_folders_on_two_filesystems_refuse_to_start_with_exit_78(root: Path, tmp_path: Path) -> None:
    other = _other_filesystem(tmp_path)
    if other is None:
        pytest.skip("no second filesystem (/dev/shm) on this machine")
    elsewhere = Path(other) / f"lipsyncd-test-done-{os.getpid()}"
    elsewhere.mkdir()
    try:
        (root / "done").symlink_to(elsewhere)  # an operator "moved done/ to the big disk"
        done = subprocess.run([sys.executable, "-m", "daemon", "intake"], cwd=REPO, env=env_for(root),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 78
        assert "different filesystem" in done.stderr and "done" in done.stderr
        assert list(elsewhere.iterdir()) == []  # nothing was written over there
    finally:
        elsewhere.rmdir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere; permission checks need a normal user")
def test_read_only_share_refuses_to_start(root: Path) -> None:
    Share(root).prepare()
    os.chmod(root / "staging", 0o555)
    try:
        with pytest.raises(ConfigError, match="writable"):
            Share(root).prepare()
    finally:
        os.chmod(root / "staging", 0o755)
