"""Claiming the next staged job (a rename to a unique name, so exactly one claimer wins) and recovery.

Recovery at start returns orphans to staging/ with attempt + 1, or to failed/ after the attempt limit.
An orphan is a processing/ job whose owner on this host is dead (pid + start time), or whose lease has
not been refreshed for `lease_s` by the share's own clock (any host).

After a failure mid-job, `raise_if_lost` tells the three stories apart: the share is away
(ShareUnreachable: nobody took anything, the lease simply stops being renewed), the claim is gone
(JobLost: the folder was renamed away or someone else's lease is in it), or neither (the failure stands).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core import lease, state
from daemon.core.errors import EnvironmentFault, ShareUnreachable, is_unreachable
from daemon.core.job import Job
from daemon.core.share import Share
from daemon.core.state import JobGone, JobState
from daemon.worker import publish, quarantine, restarts
from daemon.worker.attempt import Attempt

log = logging.getLogger(__name__)


@dataclass
class Queue:
    """Orders staged jobs by priority, then arrival; job.json is immutable, so its order key is cached.

    A folder without a readable job.json (not a job: see quarantine.py) sorts last and is claimed only
    once it has been quiet for `grace_s` on the share's clock (`share_now`), so that it can be moved to
    failed/ with its reason instead of killing the worker that claims it."""

    root: Path
    share_now: Callable[[], float] | None = None
    grace_s: float = 0.0
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
            except (OSError, ValueError, TypeError, AttributeError):
                return (0, float("inf"), job.id)  # not a job (or unreadable now): try it last
        return self._order[job.id]

    def claim(self, ident: lease.Identity) -> Job | None:
        """Claim the first job we can; losers of a race see JobGone and try the next one."""
        for job in self.ordered():
            if job.id not in self._order and not self._settled_non_job(job):
                continue
            try:
                claimed = state.move(job, JobState.PROCESSING, f"claimed by {ident.host}/{ident.worker}",
                                     owner=ident.owner_token())
            except JobGone:
                continue
            lease.write(claimed.path, ident, claimed.attempt())
            return claimed
        return None

    def _settled_non_job(self, job: Job) -> bool:
        """True for a folder that is still no job after `grace_s` without change (then: quarantine it)."""
        if quarantine.spec_problem(job) is None:
            return True  # became readable since ordered(): a job like any other
        if self.share_now is None:
            return False
        try:
            return quarantine.quiet_for(job.path, self.share_now()) >= self.grace_s
        except FileNotFoundError:
            return False  # moved away meanwhile


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
    """Put an orphan back in the queue, or fail it when its attempts are used up, with the true reason.

    A watchdog-ordered restart (a stall) and a crash are counted apart (restarts.py): `max_attempts`
    stalls fail the job as "no progress" (the machine's trouble), `max_attempts` crashes as "the worker
    stopped unexpectedly"; neither claims the input is bad."""
    problem = quarantine.spec_problem(job)
    if problem is not None:  # a non-job claimed before a crash: no attempt will make it readable
        moved = quarantine.quarantine(job, problem, language)
        if moved is None:
            raise JobGone(f"{job.id}: moved by another worker")
        return moved
    ended = Attempt.of(job, log)
    stalls = restarts.stalls(job)
    order = restarts.ended_by_watchdog(job)
    if order is not None:
        stalls += 1
    crashes = ended.number - stalls
    if stalls >= max_attempts and order is not None:
        params = {"count": stalls, "quiet": f"{order.quiet_s:.0f}", "limit": f"{order.limit_s:.0f}"}
        return _fail_orphan(ended, restarts.STALLED, params, language,
                            f"restarted {stalls} times for making no progress")
    if crashes >= max_attempts and order is None:
        return _fail_orphan(ended, "worker_died", {"count": crashes}, language, f"worker died {crashes} times")
    restarts.next_attempt(job, ended.number + 1, stalls)
    why = "restarted by the watchdog (no progress)" if order is not None else f"owner {job.owner} gone"
    moved = ended.move(JobState.STAGING, f"orphaned ({why}); attempt {ended.number + 1}")
    ended.log.warning("%s: back to staging/ for attempt %d (%d stall restarts, %d crashes of %d allowed each)",
                      why, ended.number + 1, stalls, crashes, max_attempts)
    return moved


def _fail_orphan(ended: Attempt, code: str, params: dict[str, object], language: str, why: str) -> Job:
    ended.write_failure(code, params, language)
    moved = ended.move(JobState.FAILED, why)
    ended.log.error("%s: moved to failed/", why)
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


def raise_if_lost(job_dir: Path, ident: lease.Identity, inputs: Iterable[Path] = ()) -> None:
    """Raise ShareUnreachable if the share is away, JobLost if our claim is gone; else return.

    The share is asked first: on a dead mount (ENOTCONN, EIO, ESTALE...) every path looks "missing" to
    a careless check, which would read a dead mount as a takeover. The inputs are read at
    their last byte, so a decoder that ended early because the share vanished is not taken for a
    truncated file.
    """
    try:
        os.lstat(job_dir)
    except FileNotFoundError:
        pass  # renamed away: judged by raise_if_taken_over below
    except OSError as exc:
        _raise_unreachable(exc, job_dir)
        raise
    else:
        for path in inputs:
            readable_to_end(path)
    publish.raise_if_taken_over(job_dir, ident)


def readable_to_end(path: Path) -> None:
    """EnvironmentFault (ShareUnreachable for a dead share) unless `path` can be read at its last byte."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - 1))
            fh.read(1)
    except FileNotFoundError:
        if os.path.lexists(path.parent):  # the folder is there and the file is not: someone removed it
            raise EnvironmentFault(f"{path.name} was removed from its job folder while the job ran") from None
        # the folder itself moved: a takeover, for raise_if_taken_over to say
    except OSError as exc:
        _raise_unreachable(exc, path)
        raise EnvironmentFault(f"{path.name} cannot be read any more: {exc.strerror}") from exc


def _raise_unreachable(exc: OSError, path: Path) -> None:
    if is_unreachable(exc):
        raise ShareUnreachable(f"the share is unreachable ({exc.strerror}) at {path}") from exc
