"""Claiming the next staged job (a rename to a unique name, so exactly one claimer wins) and recovery.

Recovery at start returns orphans to staging/ with attempt + 1, or to failed/ after the attempt limit.
An orphan is a processing/ job whose owner on this host is dead (pid + start time), or whose lease has
not been refreshed for `lease_s` by the share's own clock (any host).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core import lease, report, state
from daemon.core.errors import ShareUnreachable
from daemon.core.history import JobLog
from daemon.core.job import Job
from daemon.core.share import Share
from daemon.core.state import JobGone, JobState

log = logging.getLogger(__name__)


@dataclass
class Queue:
    """Orders staged jobs by priority, then arrival; job.json is immutable, so its order key is cached."""

    root: Path
    _order: dict[str, tuple[int, float, str]] = field(default_factory=dict)

    def ordered(self) -> list[Job]:
        jobs = state.jobs_in(self.root, JobState.STAGING)
        live = {job.id for job in jobs}
        for stale in set(self._order) - live:
            del self._order[stale]
        return sorted(jobs, key=self._key)

    def _key(self, job: Job) -> tuple[int, float, str]:
        if job.id not in self._order:
            try:
                spec = job.spec()
                self._order[job.id] = (-spec.priority, spec.accepted_at, job.id)
            except (OSError, ValueError, TypeError):
                return (0, float("inf"), job.id)  # unreadable now (still arriving?): try it last
        return self._order[job.id]

    def claim(self, ident: lease.Identity) -> Job | None:
        """Claim the first job we can; losers of a race see JobGone and try the next one."""
        for job in self.ordered():
            try:
                claimed = state.move(job, JobState.PROCESSING, f"claimed by {ident.host}/{ident.worker}",
                                     owner=ident.owner_token())
            except JobGone:
                continue
            lease.write(claimed.path, ident, claimed.attempt())
            return claimed
        return None


def recover(share: Share, ident: lease.Identity, max_attempts: int, lease_s: float,
            language: str) -> list[Job]:
    """Requeue or fail every orphan in processing/; returns where each landed."""
    landed = []
    share_now = share.now()
    for job in state.jobs_in(share.root, JobState.PROCESSING):
        if not _orphaned(job, ident, share_now, lease_s):
            continue
        try:
            landed.append(requeue_after_crash(job, max_attempts, language))
        except JobGone:
            continue  # another worker recovered it first
        except ShareUnreachable:
            raise
    return landed


def requeue_after_crash(job: Job, max_attempts: int, language: str) -> Job:
    attempt = job.attempt()
    note = JobLog(job.id, job.path, log)
    if attempt >= max_attempts:
        spec = job.spec()
        report.write_failure(job.path, job_id=job.id, code="worker_died", params={"count": attempt},
                             language=language, inputs={"audio": spec.audio, "video": spec.video},
                             attempts=attempt, batch=spec.batch)
        moved = state.move(job, JobState.FAILED, f"worker died {attempt} times")
        note.where = moved.path
        note.error("the worker died %d times on this job: moved to failed/", attempt)
        return moved
    job.set_attempt(attempt + 1)
    moved = state.move(job, JobState.STAGING, f"orphaned (owner {job.owner} gone); attempt {attempt + 1}")
    note.where = moved.path
    note.warning("owner %s is gone: back to staging/ for attempt %d of %d", job.owner, attempt + 1,
                 max_attempts)
    return moved


def _orphaned(job: Job, ident: lease.Identity, share_now: float, lease_s: float) -> bool:
    owner = job.owner or ""
    owner_host, _, rest = owner.rpartition(".")[0].rpartition(".")
    try:
        owner_pid = int(rest)
    except ValueError:
        owner_pid = -1
    held = lease.read(job.path)
    if held and (held.get("host"), held.get("pid")) != (owner_host, owner_pid):
        # a requeued folder keeps the lease of the claim that ended; until the new claimer (named in the
        # folder name) writes its own, that lease says nothing about the new claim
        held = None
    host = str(held["host"]) if held else owner_host
    if host == ident.host:
        if held:
            return not lease.alive(int(str(held["pid"])), float(str(held.get("pid_start") or 0)))
        return owner_pid <= 0 or not lease.alive(owner_pid, 0)
    age = lease.age(job.path, share_now, use_lease=held is not None)
    return age is not None and age > lease_s
