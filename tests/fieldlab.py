"""The field lab's second "host" for tests: an sshfs (FUSE, SFTP) mount of a share through a loopback sshd.

`../shared/field-lab/sshfs-up.sh` does the work (CI puts shared/ beside the clone, read-only; here it
may sit higher up): with a skew, the sshfs process runs under faketime, so whatever it stamps carries a
clock that is behind. Everything the lab writes goes under a temporary folder. Mounts, their sshfs
processes and the sshd are stopped by the ids this module recorded, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]


def scripts() -> Path | None:
    """The field-lab folder: `shared/field-lab` beside the clone or beside one of its parents."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "field-lab"
        if (candidate / "sshfs-up.sh").is_file():
            return candidate
    return None


def skip_unless_available() -> None:
    missing = [tool for tool in ("sshfs", "faketime", "fusermount3") if shutil.which(tool) is None]
    if scripts() is None:
        pytest.skip("the field lab (shared/field-lab/sshfs-up.sh beside the clone) is not here")
    if missing or not os.path.exists("/usr/sbin/sshd") or not os.path.exists("/dev/fuse"):
        pytest.skip(f"the sshfs field lab needs openssh-server, sshfs, faketime and /dev/fuse (missing: "
                    f"{', '.join(missing) or 'sshd or /dev/fuse'})")
    if os.geteuid() != 0:
        pytest.skip("the sshfs field lab runs sshd and allow_other mounts: it needs root")


@dataclass
class Mount:
    path: Path
    script: subprocess.Popen[bytes]  # sshfs-up.sh; under faketime it lasts as long as the mount

    def sshfs_pid(self) -> int | None:
        """The sshfs process serving this mount (it daemonizes, so it is not our child)."""
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmd = proc.info["cmdline"] or []
            if proc.info["name"] == "sshfs" and str(self.path) in cmd:
                return proc.pid
        return None

    def kill(self) -> None:
        """The mount dies as when its host loses the server: every call on it fails (ENOTCONN)."""
        pid = self.sshfs_pid()
        assert pid is not None, f"no sshfs process serves {self.path}"
        os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True, timeout=30)
        pid = self.sshfs_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        try:
            self.script.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.script.pid, signal.SIGKILL)
            self.script.wait(timeout=10)


@dataclass
class Lab:
    folder: Path
    mounts: list[Mount] = field(default_factory=list)

    def mount(self, share: Path, at: Path, skew_s: int | None = None) -> Mount:
        """Mount `share` at `at` through sshfs, its clock `skew_s` seconds off (None: the true clock)."""
        script = scripts()
        assert script is not None
        argv = ["bash", str(script / "sshfs-up.sh"), str(share), str(at), "" if skew_s is None else str(skew_s),
                str(self.folder)]
        log = open(self.folder / f"mount-{len(self.mounts)}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        mount = Mount(at, proc)
        self.mounts.append(mount)
        deadline = time.monotonic() + 60
        while not os.path.ismount(at):
            if proc.poll() not in (None, 0) or time.monotonic() > deadline:
                raise AssertionError(f"sshfs mount of {share} at {at} did not come up: "
                                     f"{(self.folder / f'mount-{len(self.mounts) - 1}.log').read_text()}")
            time.sleep(0.2)
        return mount

    def close(self) -> None:
        for mount in self.mounts:
            mount.close()
        self.mounts.clear()
        pidfile = self.folder / "ssh" / "sshd.pid"
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
