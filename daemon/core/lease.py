"""Claims on jobs in processing/: who holds it (host, pid + start time, boot id) and since when.

The owner renews its lease by *writing* to the lease file, so the file server stamps the mtime with its
own clock; `os.utime()` would send the client's "now" (sshfs and Linux CIFS do), and a host whose clock
is 200 s behind would renew leases that look 200 s old. Ages are judged against the share's own clock
(`Share.now()`, a probe file's server-stamped mtime), never a local one, so skewed hosts agree.

A pid alone is not an identity (pids are reused), so liveness on this host compares the process start
time too (read from /proc the way psutil's create_time reads it, which the watchdog uses). A renewal
that fails because the share is away raises ShareUnreachable: that says nothing about who holds the job.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.core import atomic
from daemon.core.errors import ShareUnreachable, is_unreachable
from daemon.core.job import LEASE

START_TOLERANCE_S = 0.05  # a start time is derived from clock ticks since boot: equal within a tick


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
    """When `pid` started (seconds since the epoch), or None if it does not exist."""
    try:
        return _stat(pid)[1]
    except OSError:  # gone, or hidden from us (/proc mounted hidepid)
        return None


def alive(pid: int, pid_start: float) -> bool:
    """True if the process that wrote a lease on this host still runs (same pid and start time)."""
    try:
        state, started = _stat(pid)
    except PermissionError:
        return True  # it exists; another user's process we may not inspect
    except OSError:
        return False
    if pid_start and abs(started - pid_start) > START_TOLERANCE_S:
        return False  # the pid was reused by another process
    return state not in _ENDED  # a zombie does no work


_ENDED = ("Z", "X", "x")  # zombie, dead
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, float]:
    """(state letter, start time) of `pid` from /proc, the start computed as psutil's create_time is
    (clock ticks since boot / ticks per second + the boot time), so the watchdog's psutil agrees."""
    if pid <= 0:
        raise ProcessLookupError(pid)
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    fields = raw.rpartition(b")")[2].split()  # after the command name, which may hold spaces and ")"
    return fields[0].decode(), int(fields[19]) / _CLOCK_TICKS + _boot_time()


def _boot_time() -> float:
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise FileNotFoundError("/proc/stat has no btime line")


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
    """Renew the lease; False if it is gone (the job was taken over or moved).

    Renewal rewrites the file's first byte in place: a write, so the file server stamps the mtime on
    its own clock (see the module docstring). The content does not change, so readers never see a mix.
    """
    try:
        fd = os.open(job_dir / LEASE, os.O_RDWR)
        try:
            first = os.pread(fd, 1, 0)
            os.pwrite(fd, first or b"{", 0)
        finally:
            os.close(fd)
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        if is_unreachable(exc):
            raise ShareUnreachable(f"the share is unreachable: cannot renew the lease of {job_dir.name} "
                                   f"({exc.strerror})") from exc
        raise


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
