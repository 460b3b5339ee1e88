"""Job states are folders; `move()` is the only code that renames a job folder between them.

Each allowed edge has one owner:
    intake    accepting → staging, accepting → failed   (accept / reject a drop assembled in its transaction)
              accepting → done                           (a skipped duplicate reusing a finished result)
    worker    staging → processing                       (claim)
              processing → done | failed | staging       (publish / fail / requeue after crash or stop)
              processing → processing                    (take over an expired lease: a new unique name)
    operator  failed → staging                           (`lipsyncd retry`)
The watchdog moves nothing. History is appended after the rename: losing a log line is acceptable,
losing a job is not.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from daemon.core import atomic, history
from daemon.core.errors import ShareUnreachable, is_unreachable
from daemon.core.job import FOLDER_STATES, Job, JobState

__all__ = ["ALLOWED", "FOLDER_STATES", "QUEUED", "TERMINAL", "InvalidTransition", "JobGone", "JobState", "find",
           "jobs_in", "move"]

TERMINAL = frozenset({JobState.DONE, JobState.FAILED})
QUEUED = frozenset({JobState.STAGING})

ALLOWED: frozenset[tuple[JobState, JobState]] = frozenset({
    (JobState.ACCEPTING, JobState.STAGING),
    (JobState.ACCEPTING, JobState.FAILED),
    (JobState.ACCEPTING, JobState.DONE),
    (JobState.STAGING, JobState.PROCESSING),
    (JobState.PROCESSING, JobState.DONE),
    (JobState.PROCESSING, JobState.FAILED),
    (JobState.PROCESSING, JobState.STAGING),
    (JobState.PROCESSING, JobState.PROCESSING),
    (JobState.FAILED, JobState.STAGING),
})


class InvalidTransition(Exception):
    """A bug: code asked for a move the state table does not allow."""


class JobGone(Exception):
    """The job folder was not where we expected: another process moved it first (we lost the race)."""


def move(job: Job, to: JobState, reason: str, *, owner: str | None = None) -> Job:
    """Rename the job's folder into `to`; returns the moved Job.

    `owner` names the claimer in processing/ (`<id>@<owner>`), which makes every claim a rename to a
    unique name. Raises JobGone if the source vanished (a concurrent claim or takeover won),
    FileExistsError if the destination exists (never overwrite), ShareUnreachable if the share is away.
    """
    source_state = job.state
    if (source_state, to) not in ALLOWED:
        raise InvalidTransition(f"{job.id}: {source_state.value} → {to.value} is not an allowed move")
    name = f"{job.id}@{owner}" if to is JobState.PROCESSING else job.id
    if to is JobState.PROCESSING and not owner:
        raise InvalidTransition(f"{job.id}: a claim needs an owner name")
    dest = job.root / to.folder / name
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, f"{job.id}: {dest} already exists; refusing to overwrite")
    try:
        os.rename(job.path, dest)
    except OSError as exc:
        _settle_failed_rename(job, dest, exc)
    atomic.fsync_dir(dest.parent)
    moved = Job(root=job.root, state=to, path=dest)
    history.append(moved.path, "moved", source=source_state.value, to=to.value, reason=reason)
    return moved


def _settle_failed_rename(job: Job, dest: Path, exc: OSError) -> None:
    """Decide what a failed rename means; returns only if the rename did in fact happen."""
    if exc.errno == errno.ENOENT and not os.path.lexists(dest):
        raise JobGone(f"{job.id}: {job.path} is gone (another process moved it)") from None
    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
        raise FileExistsError(errno.EEXIST, f"{job.id}: {dest} already exists") from None
    # NFS may report a rename that the server did perform (rename(2) BUGS): the destination decides.
    try:
        if os.path.lexists(dest) and not os.path.lexists(job.path):
            return
    except OSError:
        pass
    if is_unreachable(exc):
        raise ShareUnreachable(f"share unreachable while moving {job.id}: {exc.strerror}") from exc
    if exc.errno == errno.EXDEV:
        raise ShareUnreachable(f"{job.path} and {dest} are on different filesystems") from exc
    raise exc


def find(root: Path, job_id: str) -> Job | None:
    """Locate a job by id in any state folder (processing folders carry an owner suffix)."""
    for state in (JobState.STAGING, JobState.PROCESSING, JobState.DONE, JobState.FAILED):
        base = root / state.folder
        direct = base / job_id
        if state is not JobState.PROCESSING:
            if direct.is_dir():
                return Job(root=root, state=state, path=direct)
            continue
        try:
            for entry in os.scandir(base):
                if entry.name.split("@", 1)[0] == job_id and entry.is_dir():
                    return Job(root=root, state=state, path=Path(entry.path))
        except FileNotFoundError:
            continue
    return None


def jobs_in(root: Path, state: JobState) -> list[Job]:
    """Every job folder currently in `state`, unordered; hidden names are someone's temp files."""
    base = root / state.folder
    out = []
    try:
        entries = list(os.scandir(base))
    except OSError as exc:
        if is_unreachable(exc):
            raise ShareUnreachable(f"cannot list {base}: {exc.strerror}") from exc
        raise
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        out.append(Job(root=root, state=state, path=Path(entry.path)))
    return out
