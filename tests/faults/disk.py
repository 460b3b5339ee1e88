"""A small real filesystem for the share, so the fault runner can fill it up during an encode.

As root: an ext4 image on a loop device (no reserved blocks: root would write into them and never see
ENOSPC). Without root the share is a plain folder and the disk-full fault is skipped, and says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

BALLAST = ".ballast"  # hidden: intake and the state folders ignore dot-names at the share root


class SmallDisk:
    def __init__(self, base: Path, size_mb: int) -> None:
        self.base = base
        self.size_mb = size_mb
        self.mount_point = base / "share"
        self.image = base / "share.img"
        self.mounted = False

    @property
    def can_fill(self) -> bool:
        return self.mounted

    def mount(self) -> Path:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
            return self.mount_point
        subprocess.run(["truncate", "-s", f"{self.size_mb}M", str(self.image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(self.image)], check=True)
        done = subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mount_point)],
                              capture_output=True, text=True)
        if done.returncode != 0:  # no loop devices in this container: fall back to tmpfs
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs",
                                   str(self.mount_point)], capture_output=True, text=True)
        self.mounted = done.returncode == 0
        if self.mounted:
            shutil.rmtree(self.mount_point / "lost+found", ignore_errors=True)
        return self.mount_point

    def free_bytes(self) -> int:
        st = os.statvfs(self.mount_point)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Write a ballast file until the filesystem refuses (ENOSPC); returns its size."""
        written = 0
        block = b"\0" * (1 << 20)
        with open(self.mount_point / BALLAST, "ab", buffering=0) as fh:
            while True:
                try:
                    written += fh.write(block) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(block) <= 4096:
                        break
                    block = block[: len(block) // 4]  # top up the last blocks
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.mount_point / BALLAST).unlink()

    def unmount(self) -> None:
        if not self.mounted:
            return
        for _ in range(20):
            done = subprocess.run(["umount", str(self.mount_point)], capture_output=True)
            if done.returncode == 0:
                break
            subprocess.run(["sleep", "0.5"])
        else:
            subprocess.run(["umount", "-l", str(self.mount_point)], capture_output=True)
        self.mounted = False
        with contextlib.suppress(FileNotFoundError):
            self.image.unlink()
