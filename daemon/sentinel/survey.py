"""One read of the share per pass: heartbeats, job logs, new failures, the queue, disk, intake status.

`Surveyor.take()` runs on the share lane (it may hang on a dead mount); it keeps small caches and the
set of failed jobs already reported, so a pass costs O(queued + new) reads, not O(history).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core import atomic, heartbeat
from daemon.core.errors import is_unreachable
from daemon.core.heartbeat import Heartbeat
from daemon.core.share import Share


@dataclass(frozen=True)
class FailedJob:
    job: str
    code: str
    message: str
    batch: str = ""


@dataclass(frozen=True)
class FinishedJob:
    job: str
    render_s: float | None


@dataclass(frozen=True)
class Survey:
    taken_at: float
    beats: list[Heartbeat]
    processing: dict[str, Path]  # job id → its processing/<job-id>@... folder
    log_mtimes: dict[str, float]  # job id → mtime of its job.log
    new_failed: list[FailedJob]
    queued: int
    oldest_queued: tuple[str, float] | None  # (job id, accepted_at)
    disk_free_bytes: int | None
    intake: dict[str, Any] | None
    intake_mtime: float | None
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # jobs per state folder (inbox: tickets/folders)
    new_done: list[FinishedJob] = field(default_factory=list)


class Surveyor:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.share = Share(root)
        self._accepted: dict[str, float] = {}  # staging folder → accepted_at (job.json is immutable)
        self._seen_failed: set[str] | None = None  # None until the first pass: old failures are not news
        self._seen_done: set[str] | None = None
        self._failed_count = 0

    def take(self) -> Survey:
        # the first stat raises on an unreachable share, before anything else is read
        os.stat(self.root)
        skew = self._share_ahead_s()
        processing, log_mtimes = self._processing()
        # file times are stamped by the share's clock, heartbeats and `now` by ours: compare like with like
        log_mtimes = {job: mtime - skew for job, mtime in log_mtimes.items()}
        queued, oldest = self._staging()
        intake, intake_mtime = self._intake()
        intake_mtime = intake_mtime - skew if intake_mtime is not None else None
        failed = self._failed()
        done_names = {e.name for e in _entries(self.share.done)}
        counts = {"inbox": _inbox_count(self.share.inbox), "staging": queued, "processing": len(processing),
                  "done": len(done_names), "failed": self._failed_count}
        return Survey(time.time(), heartbeat.read_all(self.share.internal), processing, log_mtimes,
                      failed, queued, oldest, _free_bytes(self.root), intake, intake_mtime,
                      counts=counts, new_done=self._done(done_names))

    def _share_ahead_s(self) -> float:
        """How far the share's clock is ahead of ours (a probe file's server-stamped mtime); 0 if unknown."""
        try:
            return self.share.now() - time.time()
        except OSError as exc:
            if is_unreachable(exc):
                raise
            return 0.0  # e.g. a read-only share for this user: judge as if the clocks agreed

    def _done(self, names: set[str]) -> list[FinishedJob]:
        """Jobs that reached done/ since the last pass, with their render time (for the metrics)."""
        if self._seen_done is None:
            self._seen_done = names
            return []
        fresh = []
        for name in sorted(names - self._seen_done):
            report = _json(self.share.done / name / "report.json")
            if report is None:
                continue  # the report is written before the move; unreadable now means next pass
            self._seen_done.add(name)
            render = (report.get("timings") or {}).get("render_s")
            fresh.append(FinishedJob(name, float(render) if isinstance(render, (int, float)) else None))
        self._seen_done &= names  # retention removes old jobs: forget them too
        return fresh

    def _processing(self) -> tuple[dict[str, Path], dict[str, float]]:
        folders, mtimes = {}, {}
        for entry in _entries(self.share.processing):
            job = entry.name.split("@", 1)[0]
            folders[job] = Path(entry.path)
            try:
                mtimes[job] = os.stat(os.path.join(entry.path, "job.log")).st_mtime
            except FileNotFoundError:
                pass
        return folders, mtimes

    def _staging(self) -> tuple[int, tuple[str, float] | None]:
        names = [e.name for e in _entries(self.share.staging)]
        for name in names:
            if name not in self._accepted:
                data = _json(self.share.staging / name / "job.json")
                accepted = data.get("accepted_at") if data else None
                if isinstance(accepted, (int, float)):
                    self._accepted[name] = float(accepted)
        present = set(names)
        self._accepted = {k: v for k, v in self._accepted.items() if k in present}
        if not self._accepted:
            return len(names), None
        name, at = min(self._accepted.items(), key=lambda kv: kv[1])
        return len(names), (name, at)

    def _failed(self) -> list[FailedJob]:
        names = {e.name for e in _entries(self.share.failed)}
        self._failed_count = len(names)
        if self._seen_failed is None:
            self._seen_failed = names
            return []
        fresh = []
        for name in sorted(names - self._seen_failed):
            report = _json(self.share.failed / name / "report.json")
            if report is None:
                continue  # the worker writes report.json right after the move; next pass will see it
            self._seen_failed.add(name)
            fresh.append(FailedJob(str(report.get("job", name)), str(report.get("code", "?")),
                                   str(report.get("message", "")), str(report.get("batch", ""))))
        return fresh

    def _intake(self) -> tuple[dict[str, Any] | None, float | None]:
        path = self.share.roles / "intake.json"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None, None
        return _json(path), mtime


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []


def _inbox_count(inbox: Path) -> int:
    """Tickets and job folders waiting in inbox/ (media files alone are not jobs yet)."""
    try:
        with os.scandir(inbox) as it:
            return sum(1 for e in it if not e.name.startswith(".")
                       and (e.name.lower().endswith(".toml") or e.is_dir()))
    except FileNotFoundError:
        return 0


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = atomic.read_json(path)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _free_bytes(root: Path) -> int | None:
    try:
        st = os.statvfs(root)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize
