"""Turning a settled drop into a transaction: job ids, one job per (audio, video) pair, the file moves.

Every job's inputs are its own bytes (never a second name for an inode a producer can still write): a
file several jobs of the drop need is renamed into the first and copied from there into the others; a
file another pending ticket in inbox/ also names stays there and each job gets a verified copy
(a "snapshot", taken before the commit point, so a re-copy in place can never reach a job).
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from daemon.core import atomic
from daemon.core.job import INPUTS, JobSpec
from daemon.core.share import Share
from daemon.core.state import JobState
from daemon.core.ticket import Ticket, printable, safe_stem
from daemon.intake.assembly import Op, Planned, Transaction
from daemon.intake.drop import Drop


def new_id(stem: str, now: float) -> str:
    """`<ticket stem>-<UTC time>-<random>`: starts with the ticket's name, sorts by arrival per name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{safe_stem(stem)}-{stamp}.{int(now * 1000) % 1000:03d}-{secrets.token_hex(3)}"


class Planner:
    def __init__(self, share: Share, default_engine: str, clock: Callable[[], float] = time.time) -> None:
        self.share = share
        self.root = share.root
        self.default_engine = default_engine
        self.clock = clock

    def accept(self, drop: Drop, ticket: Ticket, keys: list[str], external_refs: set[str],
               duplicate_of: list[str | None], policy: str) -> Transaction:
        now = self.clock()
        base_id = new_id(PurePosixPath(drop.ticket.name).stem, now)
        batch = len(ticket.pairs) > 1
        ids = [f"{base_id}-{i:02d}" if batch else base_id for i in range(1, len(ticket.pairs) + 1)]
        tx = Transaction(txn=base_id, jobs=[])
        for i, (pair, job_id) in enumerate(zip(ticket.pairs, ids, strict=True)):
            inputs = {"audio": pair.audio, "video": pair.video}
            original = duplicate_of[i]
            if original is not None and policy == "fail":
                tx.jobs.append(Planned(job_id, JobState.FAILED, failure=self._failure(
                    job_id, "duplicate", {"original": original}, inputs, ticket.batch)))
                continue
            reuse = self._finished_result(original) if policy == "skip" else None
            spec = JobSpec(id=job_id, batch=ticket.batch, ticket=f"{INPUTS}/{drop.ticket.name}",
                           audio=f"{INPUTS}/{pair.audio}", video=f"{INPUTS}/{pair.video}",
                           output=pair.output, engine=ticket.engine or self.default_engine,
                           accepted_at=round(now + i * 1e-3, 3), key=keys[i], priority=ticket.priority,
                           options=dict(ticket.options))
            if reuse is not None:
                tx.jobs.append(Planned(job_id, JobState.DONE, spec=spec, result_from=reuse, duplicate_of=original))
            else:
                tx.jobs.append(Planned(job_id, JobState.STAGING, spec=spec))
        needs = [(job_id, tuple(dict.fromkeys((pair.audio, pair.video))))
                 for pair, job_id in zip(ticket.pairs, ids, strict=True)]
        tx.ops, tx.snapshots = self._ops(drop, tx.txn, needs, external_refs)
        return tx

    def _finished_result(self, original: str | None) -> str | None:
        """The earlier identical job's result, if it finished: a skipped duplicate reuses it."""
        if original is None:
            return None
        done = self.share.done / original
        try:
            spec = atomic.read_json(done / "job.json")
        except (OSError, ValueError):
            return None
        result = done / spec.get("output", "")
        return _rel(self.root, result) if result.is_file() else None

    def reject(self, drop: Drop, code: str, params: dict[str, Any], files: tuple[str, ...],
               external_refs: set[str], inputs: dict[str, str] | None = None,
               batch: str = "") -> Transaction:
        job_id = new_id(PurePosixPath(drop.ticket.name).stem, self.clock())
        # a file another pending ticket still needs stays in inbox/ for it (no copy into a rejection)
        present = tuple(f for f in files if os.path.lexists(drop.base / f) and f not in external_refs)
        planned = Planned(job_id, JobState.FAILED, failure=self._failure(job_id, code, params, inputs or {}, batch))
        ops, _ = self._ops(drop, job_id, [(job_id, present)], set())
        return Transaction(txn=job_id, jobs=[planned], ops=ops)

    def unclaimed(self, name: str, minutes: float, taken: Callable[[str], bool]) -> Transaction:
        """Move a loose file no ticket named into `failed/<name>-unclaimed/` with a plain error.txt."""
        job_id = f"{safe_stem(name)}-unclaimed"
        if taken(job_id):
            job_id = f"{new_id(name, self.clock())}-unclaimed"
        params = {"name": printable(name), "minutes": f"{minutes:g}", "job": job_id}
        planned = Planned(job_id, JobState.FAILED, failure=self._failure(job_id, "unclaimed", params, {}, ""))
        src = _rel(self.root, self.share.inbox / name)
        dst = f"{_rel(self.root, self.share.transaction(job_id))}/{job_id}/{INPUTS}/{name}"
        return Transaction(txn=job_id, jobs=[planned], ops=[Op("rename", src, dst)])

    def _failure(self, job_id: str, code: str, params: dict[str, Any], inputs: dict[str, str],
                 batch: str) -> dict[str, Any]:
        return {"job_id": job_id, "code": code, "params": params, "inputs": inputs, "attempts": 0,
                "batch": batch, "timings": {"accepted_at": round(self.clock(), 3)}}

    def _ops(self, drop: Drop, txn: str, needs: list[tuple[str, tuple[str, ...]]],
             external: set[str]) -> tuple[list[Op], list[Op]]:
        """(ops after the commit point, snapshot copies before it) for jobs [(job id, names)] of one
        drop; the ticket travels with every job. Renames come first: copies read the job's own file."""
        txn_rel = _rel(self.root, self.share.transaction(txn))

        def dest(job_id: str, name: str) -> str:
            return f"{txn_rel}/{job_id}/{INPUTS}/{name}"

        if drop.folder is not None:
            # the whole folder becomes the first job's inputs/; later jobs get copies from there
            first = needs[0][0]
            ops = [Op("rename", _rel(self.root, drop.folder), f"{txn_rel}/{first}/{INPUTS}")]
            for job_id, names in needs[1:]:
                for name in (drop.ticket.name, *names):
                    ops.append(Op("copy", dest(first, name), dest(job_id, name)))
            return ops, []
        users: dict[str, list[str]] = {}
        for job_id, names in needs:
            for name in (drop.ticket.name, *names):
                users.setdefault(name, []).append(job_id)
        renames, copies, snapshots = [], [], []
        for name, job_ids in users.items():
            src = _rel(self.root, drop.base / name)
            if name in external:
                snapshots += [Op("copy", src, dest(job_id, name)) for job_id in job_ids]
                continue
            renames.append(Op("rename", src, dest(job_ids[0], name)))
            copies += [Op("copy", dest(job_ids[0], name), dest(job_id, name)) for job_id in job_ids[1:]]
        return renames + copies, snapshots


def references(drops: list[Drop], reads: Mapping[str, tuple[Ticket | None, object]]) -> Counter[str]:
    """How many loose tickets name each inbox file (a shared file must stay for the others)."""
    refs: Counter[str] = Counter()
    for drop in drops:
        ticket = reads[drop.key][0] if drop.folder is None else None
        if ticket is not None:
            refs.update(ticket.files)
    return refs


def shared_names(drop: Drop, ticket: Ticket | None, refs: Counter[str]) -> set[str]:
    """The files of a loose drop that another waiting ticket also names."""
    if drop.folder is not None or ticket is None:
        return set()
    return {name for name in ticket.files if refs[name] > 1}


def _rel(root: Path, path: Path) -> str:
    return os.path.relpath(path, root)
