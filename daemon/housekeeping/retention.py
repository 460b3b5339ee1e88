"""Retention: the only code that deletes anything on the share, and what it may delete.

Deleted when older than their limit (by an injected clock): whole jobs in done/ (`done_days`) and failed/
(`failed_days`); leftovers (`temp_hours`): hidden partial outputs `.<name>.a<N>.part.<ext>` at the top of
done/ and failed/ job folders, entries in .lipsyncd/tmp/ and .lipsyncd/trash/, and intake transactions
without a plan.json. The face-box cache is trimmed to `facecache_max_gb`, oldest mtime first. inbox/,
staging/ and processing/ are never looked into.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core import atomic
from daemon.core.config import RetentionConfig
from daemon.core.job import ERROR, REPORT, JobState
from daemon.core.share import Share

log = logging.getLogger(__name__)

PART = re.compile(r"^\..+\.a\d+\.part\.[A-Za-z0-9]+$")
ATOMIC_TMP = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.tmp$")
DAY = 86400.0


@dataclass
class Sweep:
    """What one sweep removed (job ids and paths), for logs and tests."""

    jobs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    freed_bytes: int = 0


class Retention:
    def __init__(self, share: Share, cfg: RetentionConfig, clock: Callable[[], float] = time.time) -> None:
        self.share, self.root, self.cfg, self.clock = share, share.root, cfg, clock
        self.trash = share.trash

    def sweep(self) -> Sweep:
        now = self.clock()
        out = Sweep()
        self._empty_trash(out)  # first: what a crash left half-deleted last time
        for state, days in ((JobState.DONE, self.cfg.done_days), (JobState.FAILED, self.cfg.failed_days)):
            self._expire_jobs(state, days, now, out)
        self._leftovers(now, out)
        self._facecache(out)
        if out.jobs or out.files:
            log.info("retention: removed %d jobs and %d leftover files, %.1f MB freed", len(out.jobs),
                     len(out.files), out.freed_bytes / 1e6)
        return out

    # --- jobs ---------------------------------------------------------------------------------------
    def _expire_jobs(self, state: JobState, days: float, now: float, out: Sweep) -> None:
        folder = self.share.folder(state)
        for entry in _entries(folder):
            if not entry.is_dir(follow_symlinks=False):
                continue
            path = Path(entry.path)
            self._partials(path, now, out)
            if days <= 0:
                continue
            finished = _finished_at(path)
            if finished is None or now - finished < days * DAY:
                continue
            size = _tree_size(path)
            if self._discard(path):
                log.info("%s: removed from %s/ after %.0f days (retention.%s_days = %g)", entry.name, state.folder,
                         (now - finished) / DAY, state.folder, days)
                out.jobs.append(entry.name)
                out.freed_bytes += size

    def _partials(self, job_dir: Path, now: float, out: Sweep) -> None:
        for entry in _entries(job_dir):
            if PART.match(entry.name) and entry.is_file(follow_symlinks=False) \
                    and now - _lstat_mtime(entry) > self.cfg.temp_hours * 3600:
                out.freed_bytes += _size(entry)
                Path(entry.path).unlink(missing_ok=True)
                out.files.append(entry.path)
                log.info("%s: removed partial output %s", job_dir.name, entry.name)

    def _discard(self, path: Path) -> bool:
        """Rename into .lipsyncd/trash first, then delete: a crash mid-delete never leaves a half job
        in done/ or failed/, and of two sweepers racing, exactly one wins the rename."""
        self.trash.mkdir(exist_ok=True)
        dest = self.trash / f"{path.name}.{secrets.token_hex(3)}"
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return False  # another sweeper (or an operator) took it first
        shutil.rmtree(dest, ignore_errors=True)
        return True

    def _empty_trash(self, out: Sweep) -> None:
        for entry in _entries(self.trash):
            _remove(entry)
            out.files.append(entry.path)

    # --- leftovers ----------------------------------------------------------------------------------
    def _leftovers(self, now: float, out: Sweep) -> None:
        limit = self.cfg.temp_hours * 3600
        # atomic.write_* temp names a crash left next to our own small files (never producers' files)
        ours = [e for folder in (self.root, self.share.roles, self.share.workers)
                for e in _entries(folder) if ATOMIC_TMP.match(e.name)]
        for entry in [*_entries(self.share.tmp), *ours]:
            if now - _lstat_mtime(entry) > limit:
                out.freed_bytes += _size(entry)
                _remove(entry)
                out.files.append(entry.path)
        for entry in _entries(self.share.intake):
            # a transaction with a plan is intake's to finish (its recovery completes it): never ours
            if not entry.is_dir(follow_symlinks=False) or os.path.lexists(os.path.join(entry.path, "plan.json")):
                continue
            if now - _newest_mtime(Path(entry.path)) > limit:
                shutil.rmtree(entry.path, ignore_errors=True)
                out.files.append(entry.path)
                log.info("retention: removed abandoned intake transaction %s", entry.name)

    def _facecache(self, out: Sweep) -> None:
        files = []
        for dirpath, _dirs, names in os.walk(self.share.facecache):
            for name in names:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, st.st_size, os.path.join(dirpath, name)))
        budget = int(self.cfg.facecache_max_gb * 1e9)
        total = sum(f[1] for f in files)
        for _mtime, size, path in sorted(files):  # oldest written first
            if total <= budget:
                break
            Path(path).unlink(missing_ok=True)
            total -= size
            out.freed_bytes += size
            out.files.append(path)


def _finished_at(job_dir: Path) -> float | None:
    """When the job finished: report.json's finished_at, else the mtime of report/error, else the folder."""
    try:
        stamp = atomic.read_json(job_dir / REPORT).get("timings", {}).get("finished_at")
        if isinstance(stamp, (int, float)):
            return float(stamp)
    except (OSError, ValueError, AttributeError):
        pass
    for name in (REPORT, ERROR, ""):
        try:
            return os.stat(job_dir / name if name else job_dir).st_mtime
        except FileNotFoundError:
            continue
    return None


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []


def _lstat_mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return float("inf")


def _newest_mtime(folder: Path) -> float:
    """Newest mtime of the folder and its direct entries."""
    newest = _lstat_path(folder)
    for entry in _entries(folder):
        newest = max(newest, _lstat_mtime(entry))
    return newest


def _lstat_path(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except FileNotFoundError:
        return float("inf")


def _size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size if entry.is_file(follow_symlinks=False) \
            else _tree_size(Path(entry.path))
    except FileNotFoundError:
        return 0


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass
    return total


def _remove(entry: os.DirEntry[str]) -> None:
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        Path(entry.path).unlink(missing_ok=True)
