"""Moving a settled drop into job folders crash-safely: renames, and copies that are the job's own.

A transaction folder (`Share.transaction`: `.lipsyncd/intake/<txn>/`) first receives the new job folders
with our own files (job.json, attempt.json, error.txt/report.json for a rejection) and verified copies of
inbox files other tickets still need ("snapshots"), then `plan.json` (the commit point), then the
producer's files are renamed in and copied from the job's own file into its sister jobs, then each job
folder, ACCEPTING until then, makes its one move into staging/, failed/ or done/. Just before the
commit point a guard may call it off (NotReady: a writer still has a file open, the share's layout
changed); the folder then holds only our files and is removed. After a crash, `recover()` completes
every transaction that has a plan (ops are idempotent) and removes those without one. Nothing is ever
stranded between two renames; no job shares an inode with inbox/.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core import atomic, report, state
from daemon.core.errors import ShareUnreachable, is_out_of_space, is_unreachable
from daemon.core.job import ATTEMPT, SPEC, Job, JobSpec
from daemon.core.share import Share
from daemon.core.state import JobState

log = logging.getLogger(__name__)
PLAN = "plan.json"
FICLONE = 0x40049409  # linux/fs.h: share the source's blocks copy-on-write (btrfs, XFS); else copy


class NotReady(Exception):
    """Called off before the commit point; the drop waits in inbox/ and is looked at again later.

    `name` is the file that held it back, when one did (for the waiting list)."""

    def __init__(self, why: str, name: str = "") -> None:
        super().__init__(why)
        self.name = name


@dataclass(frozen=True)
class Op:
    kind: str  # "rename", or "copy" (a job's own bytes); "link" only in transactions of older versions
    src: str  # relative to the share root
    dst: str


@dataclass
class Planned:
    job_id: str
    target: JobState  # STAGING, FAILED, or DONE for a skipped duplicate that reuses a result
    spec: JobSpec | None = None
    failure: dict[str, Any] | None = None  # report.write_failure keyword arguments
    result_from: str | None = None  # relative to the root: an identical job's finished result
    duplicate_of: str | None = None
    notes: tuple[str, ...] = ()  # what intake adjusted (an output renamed for Windows, a name's form)


@dataclass
class Transaction:
    txn: str
    jobs: list[Planned]
    ops: list[Op] = field(default_factory=list)
    snapshots: list[Op] = field(default_factory=list)  # copies out of inbox/, made before the commit point

    def sources(self, share: Share) -> list[Path]:
        """The inbox paths this transaction reads or moves (what no writer may still hold open)."""
        return [share.root / op.src for op in (*self.ops, *self.snapshots) if not share.is_internal(op.src)]


class Assembler:
    def __init__(self, share: Share, language: str) -> None:
        self.share = share
        self.root = share.root
        self.language = language

    def commit(self, tx: Transaction, guard: Callable[[Transaction], None] = lambda tx: None) -> list[Job]:
        """Prepare, commit and execute one transaction; returns the jobs where they landed.

        `guard` runs just before the commit point and may raise NotReady to call it off."""
        folder = self.share.transaction(tx.txn)
        folder.mkdir(parents=True)
        try:
            for planned in tx.jobs:
                self._prepare(folder / planned.job_id, planned)
            guard(tx)
            for op in tx.snapshots:
                self._snapshot(op)
        except NotReady:
            shutil.rmtree(folder, ignore_errors=True)  # only our files and copies are in it
            raise
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if is_out_of_space(exc):
                raise NotReady(f"no space left on the share to copy {exc.filename or 'a shared file'}") from exc
            raise
        plan = {"txn": tx.txn, "created_at": time.time(),
                "jobs": [{"id": p.job_id, "target": p.target.value} for p in tx.jobs],
                "ops": [op.__dict__ for op in tx.ops]}
        _write_json_ascii(folder / PLAN, plan)
        return self._finish(folder, plan)

    def recover(self) -> list[Job]:
        """Complete or clear every transaction a crash left behind."""
        landed: list[Job] = []
        if not self.share.intake.is_dir():
            return landed
        for folder in sorted(p for p in self.share.intake.iterdir() if p.is_dir()):
            try:
                plan = atomic.read_json(folder / PLAN)
            except FileNotFoundError:
                log.info("removing unfinished intake preparation %s (no producer file was moved yet)",
                         folder.name)
                shutil.rmtree(folder, ignore_errors=True)
                continue
            log.warning("completing intake transaction %s interrupted by a crash", folder.name)
            landed.extend(self._finish(folder, plan))
        return landed

    def _prepare(self, job_dir: Path, planned: Planned) -> None:
        job_dir.mkdir(parents=True)  # inputs/ is made by the first move into it (or is the moved folder)
        if planned.spec is not None:
            spec = planned.spec.to_json()
            if planned.notes:
                spec["notes"] = list(planned.notes)  # readers ignore keys they do not know
            _write_json_ascii(job_dir / SPEC, spec)
        atomic.write_json(job_dir / ATTEMPT, {"attempt": 1})
        if planned.failure is not None:
            report.write_failure(job_dir, language=self.language, **planned.failure)
        if planned.result_from is not None and planned.spec is not None:
            _link_or_copy(self.root / planned.result_from, job_dir / planned.spec.output)
            report.write_success(job_dir, job_id=planned.job_id, output=planned.spec.output,
                                 inputs={"audio": planned.spec.audio, "video": planned.spec.video},
                                 attempts=0, timings={"accepted_at": planned.spec.accepted_at},
                                 batch=planned.spec.batch, code="duplicate_skipped",
                                 message=f"identical to {planned.duplicate_of}; its result was reused")

    def _finish(self, folder: Path, plan: dict[str, Any]) -> list[Job]:
        # every job folder exists once the plan is written; a missing one was already moved on
        moved = {e["id"] for e in plan["jobs"] if not (folder / e["id"]).exists()}
        ops = [Op(**o) for o in plan["ops"]]
        vanished = [op for op in ops if self._job_of(folder, op) not in moved and not self._apply(op)]
        landed = []
        for entry in plan["jobs"]:
            job_dir = folder / entry["id"]
            if entry["id"] in moved:
                continue
            target = JobState(entry["target"])
            lost = [op for op in vanished if op.dst.startswith(_rel(self.root, job_dir) + "/")]
            if lost and target is JobState.STAGING:
                target = JobState.FAILED
                name = Path(lost[0].src).name
                report.write_failure(job_dir, job_id=entry["id"], code="input_vanished",
                                     params={"name": name}, language=self.language, inputs={}, attempts=0)
            job = Job(root=self.root, state=JobState.ACCEPTING, path=job_dir)
            reason = {JobState.STAGING: "accepted", JobState.FAILED: "rejected"}.get(target, "duplicate skipped")
            landed.append(state.move(job, target, reason))
        (folder / PLAN).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            log.warning("intake transaction folder %s not empty after completion; left for inspection",
                        folder)
        return landed

    def _job_of(self, folder: Path, op: Op) -> str:
        """The job an op's destination belongs to: the first folder below its transaction's."""
        return (self.root / op.dst).relative_to(folder).parts[0]

    def _snapshot(self, op: Op) -> None:
        """Copy an inbox file another ticket still needs; NotReady if it changed while we copied."""
        src, dst = self.root / op.src, self.root / op.dst
        dst.parent.mkdir(parents=True, exist_ok=True)
        before = _identity(os.lstat(src))
        own_copy(src, dst)
        if _identity(os.lstat(src)) != before:
            raise NotReady("it changed while intake copied it (a copy in place?)", name=src.name)

    def _apply(self, op: Op) -> bool:
        """Do one op if not done yet; False if its source vanished (the producer removed it)."""
        src, dst = self.root / op.src, self.root / op.dst
        if os.path.lexists(dst):
            return True
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            if op.kind == "rename":
                os.rename(src, dst)
            elif op.kind == "copy":
                own_copy(src, dst)
            else:  # a plan written before copies replaced links: finish it as it was planned
                _link_or_copy(src, dst)
        except OSError as exc:
            if exc.errno == errno.ENOENT and not os.path.lexists(src):
                log.warning("%s vanished before intake could move it", op.src)
                return False
            if is_unreachable(exc):
                raise ShareUnreachable(f"share unreachable while moving {op.src}: {exc.strerror}") from exc
            raise
        return True


def _link_or_copy(src: Path, dst: Path) -> None:
    """A second name for a file used by several jobs; copy (temp + rename) where links are refused."""
    try:
        os.link(src, dst, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS):
            raise
    tmp = dst.with_name(f".{dst.name}.part")
    shutil.copyfile(src, tmp, follow_symlinks=False)
    os.rename(tmp, dst)


def _write_json_ascii(path: Path, obj: Any) -> None:
    """JSON that survives a file name which is not UTF-8: its undecodable bytes (surrogate escapes)
    are written as \\udcXX and read back as the same name by json.loads."""
    atomic.write_bytes(path, (json.dumps(obj, ensure_ascii=True, indent=2, sort_keys=True) + "\n").encode())


def own_copy(src: Path, dst: Path) -> None:
    """`dst` becomes a file of its own with `src`'s bytes and times: a reflink where the filesystem
    has one, else a copy in the kernel; written under a temporary name and renamed into place."""
    tmp = dst.with_name(f".{dst.name}.part")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    sfd = os.open(src, flags)
    try:
        dfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            if not _reflink(sfd, dfd):
                _kernel_copy(sfd, dfd, os.fstat(sfd).st_size)
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    shutil.copystat(src, tmp, follow_symlinks=False)
    os.rename(tmp, dst)


def _reflink(sfd: int, dfd: int) -> bool:
    try:
        fcntl.ioctl(dfd, FICLONE, sfd)
        return True
    except OSError:  # EOPNOTSUPP, EXDEV, EINVAL: this filesystem copies
        return False


def _kernel_copy(sfd: int, dfd: int, size: int) -> None:
    offset = 0
    while offset < size:
        try:
            sent = os.copy_file_range(sfd, dfd, min(size - offset, 1 << 30), offset, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            sent = os.pwrite(dfd, os.pread(sfd, min(size - offset, 1 << 20), offset), offset)
        if sent == 0:
            break  # the source shrank under us: the snapshot check sees it
        offset += sent


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _rel(root: Path, path: Path) -> str:
    return os.path.relpath(path, root)
