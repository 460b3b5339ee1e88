"""Turning a settled drop into a transaction: job ids, one job per (audio, video) pair, the file moves.

A file several jobs need is linked into all but the last and renamed into the last; a file another
pending ticket in inbox/ also names is only linked, so that ticket can still complete.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from daemon.core import atomic
from daemon.core.job import INPUTS, JobSpec
from daemon.core.ticket import Ticket, safe_stem
from daemon.intake.assembly import Op, Planned, Transaction
from daemon.intake.drop import Drop


def new_id(stem: str, now: float) -> str:
    """`<ticket stem>-<UTC time>-<random>`: starts with the ticket's name, sorts by arrival per name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{safe_stem(stem)}-{stamp}.{int(now * 1000) % 1000:03d}-{secrets.token_hex(3)}"


class Planner:
    def __init__(self, root: Path, default_engine: str, clock: Callable[[], float] = time.time) -> None:
        self.root = root
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
                tx.jobs.append(Planned(job_id, "failed", failure=self._failure(
                    job_id, "duplicate", {"original": original}, inputs, ticket.batch)))
                continue
            reuse = self._finished_result(original) if policy == "skip" else None
            spec = JobSpec(id=job_id, batch=ticket.batch, ticket=f"{INPUTS}/{drop.ticket.name}",
                           audio=f"{INPUTS}/{pair.audio}", video=f"{INPUTS}/{pair.video}",
                           output=pair.output, engine=ticket.engine or self.default_engine,
                           accepted_at=round(now + i * 1e-3, 3), key=keys[i], priority=ticket.priority,
                           options=dict(ticket.options))
            if reuse is not None:
                tx.jobs.append(Planned(job_id, "done", spec=spec, result_from=reuse, duplicate_of=original))
            else:
                tx.jobs.append(Planned(job_id, "staging", spec=spec))
        needs = [(job_id, tuple(dict.fromkeys((pair.audio, pair.video))))
                 for pair, job_id in zip(ticket.pairs, ids, strict=True)]
        tx.ops = self._ops(drop, tx.txn, needs, external_refs)
        return tx

    def _finished_result(self, original: str | None) -> str | None:
        """The earlier identical job's result, if it finished: a skipped duplicate reuses it."""
        if original is None:
            return None
        done = self.root / "done" / original
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
        present = tuple(f for f in files if os.path.lexists(drop.base / f))
        planned = Planned(job_id, "failed", failure=self._failure(job_id, code, params, inputs or {}, batch))
        return Transaction(txn=job_id, jobs=[planned],
                           ops=self._ops(drop, job_id, [(job_id, present)], external_refs))

    def _failure(self, job_id: str, code: str, params: dict[str, Any], inputs: dict[str, str],
                 batch: str) -> dict[str, Any]:
        return {"job_id": job_id, "code": code, "params": params, "inputs": inputs, "attempts": 0,
                "batch": batch, "timings": {"accepted_at": round(self.clock(), 3)}}

    def _ops(self, drop: Drop, txn: str, needs: list[tuple[str, tuple[str, ...]]],
             external: set[str]) -> list[Op]:
        """File moves for jobs [(job id, names)] of one drop; the ticket travels with every job."""
        txn_rel = os.path.relpath(self.root / ".lipsyncd" / "intake", self.root)

        def dest(job_id: str, name: str) -> str:
            return f"{txn_rel}/{txn}/{job_id}/{INPUTS}/{name}"

        if drop.folder is not None:
            # the whole folder becomes the first job's inputs/; later jobs link from there
            first = needs[0][0]
            ops = [Op("rename", _rel(self.root, drop.folder), f"{txn_rel}/{txn}/{first}/{INPUTS}")]
            for job_id, names in needs[1:]:
                for name in (drop.ticket.name, *names):
                    ops.append(Op("link", dest(first, name), dest(job_id, name)))
            return ops
        users: dict[str, list[str]] = {}
        for job_id, names in needs:
            for name in (drop.ticket.name, *names):
                users.setdefault(name, []).append(job_id)
        ops = []
        for name, job_ids in users.items():
            src = _rel(self.root, drop.base / name)
            for job_id in job_ids[:-1]:
                ops.append(Op("link", src, dest(job_id, name)))
            last = "link" if name in external else "rename"
            ops.append(Op(last, src, dest(job_ids[-1], name)))
        return ops


def _rel(root: Path, path: Path) -> str:
    return os.path.relpath(path, root)
