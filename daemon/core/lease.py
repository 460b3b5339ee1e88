"""Claims on jobs in processing/: who holds it (host, pid + start time, boot id) and since when.

The lease file's mtime is refreshed by its owner and judged against the share's own clock (a probe
file's mtime), never a local clock, so skewed hosts agree. A pid alone is not an identity (pids are
reused), so liveness on this host compares the process start time too.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.core import atomic
from daemon.core.job import LEASE


@dataclass(frozen=True)
class Identity:
    host: str
    pid: int
    pid_start: float
    boot_id: str
    worker: str

    def owner_token(self) -> str:
        """A name unique to one claim: host, pid and randomness (also unique across retries)."""
        return f"{self.host}.{self.pid}.{secrets.token_hex(3)}"


def this_process(worker: str, host: str = "") -> Identity:
    pid = os.getpid()
    return Identity(host=host or socket.gethostname(), pid=pid, pid_start=process_start(pid) or 0.0,
                    boot_id=boot_id(), worker=worker)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> float | None:
    """Start time of `pid` in clock ticks since boot (from /proc), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return float(fields[19])
    except (IndexError, ValueError):
        return None


def alive(pid: int, pid_start: float) -> bool:
    """True if the process that wrote a lease on this host still runs (same pid and start time)."""
    start = process_start(pid)
    if start is None:
        return False
    if pid_start and start != pid_start:
        return False  # the pid was reused by another process
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        if state[state.rfind(")") + 2:].startswith(("Z", "X")):
            return False  # a zombie does no work
    except OSError:
        return False
    return True


def write(job_dir: Path, ident: Identity, attempt: int) -> None:
    data = asdict(ident)
    data.update(attempt=attempt, claimed_at=round(time.time(), 3))
    atomic.write_json(job_dir / LEASE, data, fsync=False)


def read(job_dir: Path) -> dict[str, object] | None:
    try:
        data = atomic.read_json(job_dir / LEASE)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def touch(job_dir: Path) -> bool:
    """Refresh the lease; False if it is gone (the job was taken over or moved)."""
    try:
        os.utime(job_dir / LEASE)
        return True
    except FileNotFoundError:
        return False


def age(job_dir: Path, share_now: float, use_lease: bool = True) -> float | None:
    """Seconds since the owner last refreshed the lease, by the share's clock (None: the folder is gone).

    `use_lease=False`: the lease file is a previous claim's, so judge by the folder alone."""
    try:
        if not use_lease:
            raise FileNotFoundError
        mtime = os.stat(job_dir / LEASE).st_mtime
    except FileNotFoundError:
        try:
            mtime = os.stat(job_dir).st_mtime  # claimed but lease not yet written: the rename's time
        except FileNotFoundError:
            return None
    return share_now - mtime
