"""Logging for every role: stderr (supervisord/journald rotate it) plus a shared errors log on the share."""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(role)s[%(process)d] %(name)s: %(message)s"


class _RoleFilter(logging.Filter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = self.role
        return True


class _ShareFile(logging.FileHandler):
    """errors.log on the share. A write it cannot make (share full or away) costs one stderr line a
    minute instead of a traceback per record; the record itself has reached stderr already."""

    _quiet_until = 0.0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        now = time.monotonic()
        if now < self._quiet_until:
            return
        self._quiet_until = now + 60
        exc = sys.exc_info()[1]
        sys.stderr.write(f"lipsyncd: cannot write {self.baseFilename} ({exc}); log lines go to stderr only\n")


def setup(role: str, level: str, errors_log: Path | None = None) -> None:
    """Configure the root logger once per process; warnings and worse also go to errors_log."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(FORMAT))
    stderr.addFilter(_RoleFilter(role))
    root.addHandler(stderr)
    if errors_log is not None:
        try:
            errors_log.parent.mkdir(parents=True, exist_ok=True)
            handler = _ShareFile(errors_log, encoding="utf-8")
        except OSError:
            return
        handler.setLevel(logging.WARNING)
        # several hosts may append to the one errors.log on the share: say which host wrote each line
        handler.setFormatter(logging.Formatter(FORMAT.replace("%(role)s", f"{socket.gethostname()} %(role)s")))
        handler.addFilter(_RoleFilter(role))
        root.addHandler(handler)
