"""A job's story: history.jsonl (machine lines) and job.log (human lines), both inside the job folder.

Both are history, never state: they are written after the fact and a lost line harms nothing. Every
job.log line starts with the job id so one grep across folders and role logs tells a job's whole story.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

HISTORY = "history.jsonl"
JOB_LOG = "job.log"

log = logging.getLogger(__name__)


def append(job_dir: Path, event: str, **fields: Any) -> None:
    """Append one event line; failures are logged, never raised (history must not lose a job)."""
    line = {"t": round(time.time(), 3), "event": event, "host": socket.gethostname(), "pid": os.getpid()}
    line.update(fields)
    _append_line(job_dir / HISTORY, json.dumps(line, ensure_ascii=False, default=str))


def read(job_dir: Path) -> list[dict[str, Any]]:
    try:
        text = (job_dir / HISTORY).read_text(encoding="utf-8")
    except OSError:
        return []
    events = []
    for raw in text.splitlines():
        try:
            events.append(json.loads(raw))
        except ValueError:
            continue  # a torn last line after a crash is expected
    return events


class JobLog:
    """Logs lines about one job to the role's logger and to the job's own job.log.

    The job folder moves between states; whoever moves it points `where` at the new folder (the
    worker's Attempt.move does so for every move it makes).
    """

    def __init__(self, job_id: str, where: Path, logger: logging.Logger) -> None:
        self.job_id = job_id
        self.where = where
        self._logger = logger

    def info(self, msg: str, *args: Any) -> None:
        self._emit(logging.INFO, msg, args)

    def warning(self, msg: str, *args: Any) -> None:
        self._emit(logging.WARNING, msg, args)

    def error(self, msg: str, *args: Any) -> None:
        self._emit(logging.ERROR, msg, args)

    def _emit(self, level: int, msg: str, args: tuple[Any, ...]) -> None:
        text = (msg % args) if args else msg
        self._logger.log(level, "%s: %s", self.job_id, text)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        _append_line(self.where / JOB_LOG, f"{self.job_id}: {stamp} {logging.getLevelName(level)} {text}")


def _append_line(path: Path, line: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError as exc:
        log.warning("%s: could not append to %s: %s", path.parent.name.split("@", 1)[0], path, exc.strerror)
