"""The intake role: each step scans inbox/, waits for drops to settle, then accepts or rejects them."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.core import atomic, history
from daemon.core import ticket as tickets
from daemon.core.config import Config
from daemon.core.errors import JobRejected, ShareUnreachable
from daemon.core.job import Job
from daemon.core.lifecycle import Stopper, run_until_stopped
from daemon.core.notify import Notifier
from daemon.core.share import Share
from daemon.core.ticket import Ticket
from daemon.housekeeping.keeper import Housekeeper
from daemon.intake import checks
from daemon.intake.assembly import Assembler, Transaction
from daemon.intake.diskguard import DiskGuard
from daemon.intake.drop import Drop, folder_files, lstat, scan, signature
from daemon.intake.ledger import Ledger
from daemon.intake.planner import Planner
from daemon.intake.settle import Settler

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, config: Config, share: Share, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg = config.intake
        self.config = config
        self.share = share
        self.inbox = share.folder("inbox")
        self.settler = Settler(self.cfg.settle_s, self.cfg.settle_scans, clock)
        self.assembler = Assembler(share.root, config.general.language)
        self.planner = Planner(share.root, config.worker.engine, wall)
        self.ledger = Ledger(share.root)
        self.paused: str | None = None
        self.disk = DiskGuard(share.root, self.cfg.pause_below_free_gb, self.cfg.resume_above_free_gb)

    def start(self) -> None:
        """Complete whatever a crash interrupted, before looking at the inbox again."""
        for job in self.assembler.recover():
            log.info("%s: recovered into %s/", job.id, job.state)

    def step(self) -> bool:
        try:
            low = self.disk.check()
        except OSError:
            low = None  # statvfs failed: the scan below tells an unreachable share apart
        if low is not None:
            self._pause(low)  # the drops wait in inbox/; settle state restarts when we resume
            return False
        try:
            drops = scan(self.inbox)
            reads = {drop.key: self._read(drop) for drop in drops}  # each ticket read once per scan
            refs = self._references(drops, reads)
            busy = False
            for drop in drops:
                busy |= self._consider(drop, reads[drop.key], refs)
            self.settler.keep_only(d.key for d in drops)
        except ShareUnreachable as exc:
            self._pause(str(exc))
            return False
        self._pause(None)
        return busy

    def _consider(self, drop: Drop, read: tuple[Ticket | None, JobRejected | None], refs: Counter[str]) -> bool:
        ticket, problem = read
        parts: list[object] = [signature(lstat(drop.ticket))]
        if drop.folder is not None:
            parts += [(name, signature(st)) for name, st in folder_files(drop.folder)]
        elif ticket is not None:
            parts += [(name, signature(lstat(drop.base / name))) for name in ticket.files]
        settled = self.settler.observe(drop.key, tuple(parts))
        missing = checks.missing_files(drop, ticket) if ticket is not None else []
        if missing and self.settler.waiting_for(drop.key) > self.cfg.orphan_timeout_min * 60:
            return self._reject(drop, self._missing(drop, missing), ticket, refs)
        if not settled or (problem is None and missing):
            return False
        if problem is None and drop.other_tickets:
            names = ", ".join((drop.ticket.name, *drop.other_tickets))
            problem = JobRejected("folder_two_tickets", folder=drop.folder.name if drop.folder else "",
                                  count=1 + len(drop.other_tickets), tickets=names)
        if problem is None and ticket is not None:
            try:
                checks.check_files(drop, ticket, self.cfg.max_file_mb * 1048576)
            except JobRejected as exc:
                problem = exc
            except FileNotFoundError:
                return False  # removed between two stats: the next scans decide
        if problem is not None:
            return self._reject(drop, problem, ticket, refs)
        assert ticket is not None
        return self._accept(drop, ticket, refs)

    def _read(self, drop: Drop) -> tuple[Ticket | None, JobRejected | None]:
        try:
            raw = checks.check_ticket_file(drop, self.cfg.max_ticket_bytes)
            return tickets.parse(raw, drop.label, allowed_engines=self.cfg.allowed_engines,
                                 max_files=self.cfg.max_files_per_ticket,
                                 nested=drop.folder is not None), None
        except JobRejected as exc:
            return None, exc
        except FileNotFoundError:
            return None, None

    def _missing(self, drop: Drop, missing: list[str]) -> JobRejected:
        empty = [n for n in missing if lstat(drop.base / n) is not None]
        if empty and len(empty) == len(missing):
            return JobRejected("file_empty", name=", ".join(empty))
        return JobRejected("files_missing", ticket=drop.label, missing=", ".join(missing),
                           minutes=f"{self.cfg.orphan_timeout_min:g}")

    def _accept(self, drop: Drop, ticket: Ticket, refs: Counter[str]) -> bool:
        engine = ticket.engine or self.config.worker.engine
        keys = [checks.job_key(drop, ticket, pair, engine) for pair in ticket.pairs]
        policy = self.cfg.duplicate_policy
        originals = [self.ledger.original(k) if policy != "process" else None for k in keys]
        tx = self.planner.accept(drop, ticket, keys, self._external(drop, ticket, refs), originals, policy)
        landed = self._commit(drop, tx)
        for job, key in zip(landed, keys, strict=False):
            if job.state != "failed":
                self.ledger.record(key, job.id)
        return True

    def _reject(self, drop: Drop, problem: JobRejected, ticket: Ticket | None, refs: Counter[str]) -> bool:
        files = ticket.files if ticket is not None else ()
        inputs = ({"audio": ticket.pairs[0].audio, "video": ticket.pairs[0].video}
                  if ticket is not None and len(ticket.pairs) == 1 else {})
        external = self._external(drop, ticket, refs) if ticket is not None else set()
        tx = self.planner.reject(drop, problem.code, problem.params, files, external, inputs,
                                 ticket.batch if ticket is not None else "")
        self._commit(drop, tx)
        return True

    def _commit(self, drop: Drop, tx: Transaction) -> list[Job]:
        landed = self.assembler.commit(tx)
        self.settler.forget(drop.key)
        for job in landed:
            note = history.JobLog(job.id, job.path, log)
            if job.state == "failed":
                report = job.report() or {}
                note.warning("rejected %s: %s", drop.label, report.get("message_en", report.get("code")))
            else:
                note.info("accepted %s into %s/", drop.label, job.state)
        return landed

    @staticmethod
    def _references(drops: list[Drop], reads: dict[str, tuple[Ticket | None, JobRejected | None]]) -> Counter[str]:
        """How many loose tickets name each inbox file (shared files must stay for the others)."""
        refs: Counter[str] = Counter()
        for drop in drops:
            if drop.folder is None:
                ticket, _ = reads[drop.key]
                if ticket is not None:
                    refs.update(ticket.files)
        return refs

    @staticmethod
    def _external(drop: Drop, ticket: Ticket | None, refs: Counter[str]) -> set[str]:
        if drop.folder is not None or ticket is None:
            return set()
        return {name for name in ticket.files if refs[name] > 1}

    def _pause(self, reason: str | None) -> None:
        def kind(r: str | None) -> str | None:
            return r.split(":", 1)[0] if r else None

        if kind(reason) != kind(self.paused):  # not on every new free-space figure in the reason
            if reason:
                log.error("intake paused: %s", reason)
            else:
                log.info("intake resumed")
        self.paused = reason
        self.write_status()

    def write_status(self) -> None:
        status = {"host": socket.gethostname(), "pid": os.getpid(), "written_at": round(time.time(), 3),
                  "paused": self.paused is not None, "pause_reason": self.paused or "",
                  "share_ok": self.paused is None or not self.paused.startswith("share"),
                  "disk_low": self.disk.low, "disk_free_bytes": self.disk.free}
        try:
            atomic.write_json(self.share.internal / "roles" / "intake.json", status, fsync=False)
        except OSError as exc:
            log.debug("could not write intake status: %s", exc)


def run(config: Config, args: argparse.Namespace) -> int:
    stop = Stopper()
    stop.install()  # before recovery: a SIGTERM during it must finish it, not kill us half-way
    share = Share(Path(config.share.root))
    share.prepare()
    stop = Stopper()
    stop.install()  # before recovery: a SIGTERM while it completes a crashed transaction still exits 0
    intake = Intake(config, share)
    intake.start()
    wake = threading.Event()
    observer = _start_hint(share.folder("inbox"), wake) if config.intake.local_events else None
    log.info("intake watching %s (scan every %.1f s, settle %.1f s)", share.folder("inbox"),
             config.intake.scan_interval_s, config.intake.settle_s)
    notifier = Notifier()
    notifier.ready("watching inbox/")
    # the status board and retention run once per share, beside the scans, never on the GPU hosts' workers
    keeper = Housekeeper(config)
    keeper.start(stop.event, stop.set)

    def step() -> bool:
        busy = intake.step()
        if intake.paused is None:  # a scan that really read the share: tell systemd we are alive
            notifier.alive("watching inbox/")
        return busy

    try:
        run_until_stopped(step, config.intake.scan_interval_s, stop, wake)
    finally:
        notifier.stopping()
        keeper.join()
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
    if keeper.failure is not None:
        raise keeper.failure  # a bug: cli's boundary logs it and exits non-zero
    log.info("intake stopped")
    return 0


def _start_hint(inbox: Path, wake: threading.Event) -> Any | None:
    from daemon.intake.wakeup import start

    return start(inbox, wake)
