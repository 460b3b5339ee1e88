"""Logging for every role: stderr (supervisord/journald rotate it) plus this host's errors log on the share.

Every record is one line (newlines inside a message or traceback are written as a literal `\\n`), and a
record emitted while a worker renders a job starts with that job's id. Each host writes its own
`.lipsyncd/logs/<host>/errors.log` and `alerts.jsonl`, rotated by size (`general.log_max_mb`) with
`general.log_keep` old files kept: several hosts never append to one file, and nothing grows forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(role)s[%(process)d] %(name)s: %(message)s"
LOGS = "logs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# the job this process is rendering now: a worker renders one job at a time, so a process-wide value
# (not a thread-local) also covers the helper threads of its pipeline (face pass, read-ahead)
_current_job: str | None = None


def host_folder(internal: Path, host: str) -> Path:
    """`.lipsyncd/logs/<host>/`: this host's errors.log and alerts.jsonl."""
    return internal / LOGS / (_UNSAFE.sub("_", host) or "host")


@contextlib.contextmanager
def job(job_id: str) -> Iterator[None]:
    """While inside, records that do not name a job already start with `job_id: `."""
    global _current_job
    previous, _current_job = _current_job, job_id
    try:
        yield
    finally:
        _current_job = previous


class _Context(logging.Filter):
    """Adds the role name to each record and the current job's id to a message that lacks it."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        current = _current_job
        if current and not getattr(record, "_job_tagged", False):
            message = record.getMessage()
            if not message.startswith(f"{current}: "):
                record.msg, record.args = f"{current}: {message}", None
            record._job_tagged = True  # the same record passes every handler's filter
        return True


class OneLine(logging.Formatter):
    """A record is one line: embedded newlines (alert bodies, tracebacks) become a literal `\\n`."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r", "").replace("\n", "\\n")


@dataclass(frozen=True)
class Rotation:
    max_bytes: int = 10 * 1024 * 1024
    keep: int = 5  # rotated files kept beside the live one: name.1 (newest) ... name.<keep>

    @classmethod
    def of(cls, general: object) -> Rotation:
        """From config's [general] log_max_mb / log_keep."""
        return cls(int(general.log_max_mb * 1024 * 1024), general.log_keep)  # type: ignore[attr-defined]


_UNLOCKED: set[Path] = set()  # files whose lock the filesystem refused, said once each


def append(path: Path, line: str, rotation: Rotation) -> None:
    """Append one line; when the file would pass its size, rotate it first.

    Every role of this host appends to the same file: the size check, the rotation and the write happen
    under an exclusive lock on a lock file beside it, so no file passes its size and no line lands in a
    file just rotated away. Where the filesystem refuses locks, O_APPEND still keeps each line whole.
    """
    data = line.encode("utf-8")
    for folder in (path.parent.parent, path.parent):  # logs/<host>/ on a first line; never .lipsyncd itself,
        if not folder.is_dir():                       # which would recreate an unmounted share locally
            folder.mkdir(exist_ok=True)
    lock = os.open(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. ENOLCK on a share without a lock manager: lines stay whole
            if path not in _UNLOCKED:  # stderr, not logging: this may be the log handler's own write
                _UNLOCKED.add(path)
                print(f"lipsyncd: no lock for {path} ({exc.strerror}): its rotation may race between "
                      "processes", file=sys.stderr)
        try:
            if os.stat(path).st_size + len(data) > rotation.max_bytes:
                _rotate(path, rotation)
        except FileNotFoundError:
            pass
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    finally:
        os.close(lock)  # closing releases the flock


def _rotate(path: Path, rotation: Rotation) -> None:
    """Shift path → path.1 → path.2 …, keeping `rotation.keep` old files; the caller holds the lock."""
    for i in range(rotation.keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    if rotation.keep:
        os.replace(path, path.with_name(f"{path.name}.1"))
    else:
        os.unlink(path)


class _ShareFile(logging.Handler):
    """errors.log on the share. A write it cannot make (share full or away) costs one stderr line a
    minute instead of a traceback per record; the record itself has reached stderr already."""

    def __init__(self, path: Path, rotation: Rotation) -> None:
        super().__init__()
        self.path, self.rotation = path, rotation
        self._quiet_until = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            append(self.path, self.format(record) + "\n", self.rotation)
        except Exception:  # noqa: BLE001 - logging's contract: a handler never raises into the caller
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        now = time.monotonic()
        if now < self._quiet_until:
            return
        self._quiet_until = now + 60
        exc = sys.exc_info()[1]
        sys.stderr.write(f"lipsyncd: cannot write {self.path} ({exc}); log lines go to stderr only\n")


def setup(role: str, level: str, errors_log: Path | None = None, host: str = "",
          rotation: Rotation | None = None) -> None:
    """Configure the root logger once per process; warnings and worse also go to errors_log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(OneLine(FORMAT))
    stderr.addFilter(_Context(role))
    root.addHandler(stderr)
    if errors_log is None:
        return
    try:
        errors_log.parent.mkdir(parents=True, exist_ok=True)  # the caller checked that the share root exists
    except OSError:
        return
    handler = _ShareFile(errors_log, rotation or Rotation())
    handler.setLevel(logging.WARNING)
    # the host is in the folder name too; in the line it keeps a copied or merged log readable
    handler.setFormatter(OneLine(FORMAT.replace("%(role)s", f"{host or os.uname().nodename} %(role)s")))
    handler.addFilter(_Context(role))
    root.addHandler(handler)
