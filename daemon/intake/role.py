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
from typing import Any, Protocol

from daemon.core import atomic, history
from daemon.core import ticket as tickets
from daemon.core.config import Config
from daemon.core.errors import JobRejected, ShareUnreachable
from daemon.core.job import Job
from daemon.core.lifecycle import Stopper, run_until_stopped
from daemon.core.notify import Notifier
from daemon.core.share import Share
from daemon.core.state import JobState
from daemon.core.ticket import Ticket, printable
from daemon.intake import checks, layout, reasons, writers
from daemon.intake.assembly import Assembler, NotReady, Transaction
from daemon.intake.completeness import Completeness
from daemon.intake.diskguard import DiskGuard
from daemon.intake.drop import Drop, folder_files, lstat, scan, signature
from daemon.intake.ledger import Ledger
from daemon.intake.names import Names
from daemon.intake.planner import Planner, references, shared_names
from daemon.intake.settle import Settler
from daemon.intake.unclaimed import Sweeper
from daemon.intake.waiting import Board, Wait

log = logging.getLogger(__name__)
assert reasons  # imported for its messages


Read = tuple[Ticket | None, JobRejected | None]


class Intake:
    def __init__(self, config: Config, share: Share, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg = config.intake
        self.config = config
        self.share = share
        self.inbox = share.inbox
        self.clock, self.wall = clock, wall
        self.settler = Settler(self.cfg.settle_s, self.cfg.settle_scans, clock)
        self.assembler = Assembler(share, config.general.language)
        self.planner = Planner(share, config.worker.engine, wall)
        self.ledger = Ledger(share)
        self.completeness = Completeness()
        self.sweeper = Sweeper(self.inbox, self.cfg.orphan_timeout_min * 60,
                               Settler(0, 1, clock))
        self.board = Board()
        self.held: dict[str, tuple[str, str]] = {}  # drop -> (file, why) a writer held open at the last try
        self.writers: writers.Writers | None = None  # this scan's look at /proc, taken when first needed
        self.paused: str | None = None
        self.disk = DiskGuard(share.root, self.cfg.pause_below_free_gb, self.cfg.resume_above_free_gb)

    def start(self) -> None:
        """Complete whatever a crash interrupted, before looking at the inbox again."""
        for job in self.assembler.recover():
            log.info("%s: recovered into %s/", job.id, job.state.folder)

    def step(self) -> bool:
        try:
            low = self.disk.check()
        except OSError:
            low = None  # statvfs failed: the scan below tells an unreachable share apart
        if low is not None:
            self._pause(low)  # the drops wait in inbox/; settle state restarts when we resume
            return False
        refused = layout.problem(self.share)  # at every scan: a link may replace inbox/ any time
        if refused is not None:
            self._pause(refused)
            return False
        try:
            busy = self._scan()
        except ShareUnreachable as exc:
            self._pause(str(exc))
            return False
        self._pause(None)
        return busy

    def _scan(self) -> bool:
        drops = scan(self.inbox)
        names = Names()
        reads = {drop.key: self._read(drop, names) for drop in drops}  # each ticket read once per scan
        refs = references(drops, reads)
        self.board = Board()
        self.writers = None
        busy = False
        for drop in drops:
            busy |= self._consider(drop, reads[drop.key], refs)
        self.settler.keep_only(d.key for d in drops)
        self.held = {k: v for k, v in self.held.items() if k in reads}
        busy |= self._sweep(drops, reads)
        return busy

    def _consider(self, drop: Drop, read: Read, refs: Counter[str]) -> bool:
        ticket, problem = read
        try:
            parts = self._parts(drop, ticket)
        except JobRejected as exc:  # a name no file can have (too long, a link loop)
            parts, problem, ticket = {}, problem or exc, None
        settled = self.settler.observe(drop.key, parts)
        if problem is None and ticket is not None:
            missing = checks.missing_files(drop, ticket)
            if missing:
                return self._wait_missing(drop, ticket, missing, refs)
        if not settled:
            if drop.key in self.held:  # settling again after a writer held a file open
                name, why = self.held[drop.key]
                self._waits(drop).add(name, "open", why)
            elif problem is None and ticket is not None:
                self._waits(drop).add(", ".join(self.settler.changed(drop.key)) or drop.label, "copying")
            return False
        problem = problem or self._file_problem(drop, ticket)
        if problem is not None:
            return self._reject(drop, problem, ticket, refs)
        assert ticket is not None
        incomplete = [(n, cut) for n in ticket.files if (cut := self._incomplete(drop, n, parts)) is not None]
        if incomplete:
            return self._wait_incomplete(drop, ticket, incomplete, refs)
        return self._accept(drop, ticket, refs)

    def _parts(self, drop: Drop, ticket: Ticket | None) -> dict[str, object]:
        """{name: signature} of the ticket and what it covers: the whole folder, or the named files."""
        parts: dict[str, object] = {drop.ticket.name: signature(lstat(drop.ticket))}
        if drop.folder is not None:
            parts.update((name, signature(st)) for name, st in folder_files(drop.folder))
        elif ticket is not None:
            parts.update((name, signature(lstat(drop.base / name))) for name in ticket.files)
        return parts

    def _file_problem(self, drop: Drop, ticket: Ticket | None) -> JobRejected | None:
        if drop.other_tickets:
            names = ", ".join(printable(n) for n in (drop.ticket.name, *drop.other_tickets))
            return JobRejected("folder_two_tickets", folder=printable(drop.folder.name) if drop.folder else "",
                               count=1 + len(drop.other_tickets), tickets=names)
        if ticket is None:
            return None
        try:
            checks.check_files(drop, ticket, self.cfg.max_file_mb * 1048576)
        except JobRejected as exc:
            return exc
        except FileNotFoundError:
            return None  # removed between two stats: missing_files says so at the next scan
        return None

    def _incomplete(self, drop: Drop, name: str, parts: dict[str, object]) -> str | None:
        return self.completeness.verdict(drop.base / name, parts.get(name))

    def _waits(self, drop: Drop) -> Wait:
        """This scan's entry for `drop` on the board; its times are wall-clock for the page."""
        now = self.wall()
        return self.board.wait(drop.key, drop.label, now - self.settler.waiting_for(drop.key),
                               now - self.settler.unchanged_for(drop.key))

    def _wait_missing(self, drop: Drop, ticket: Ticket, missing: list[str], refs: Counter[str]) -> bool:
        limit = self.cfg.orphan_timeout_min * 60
        if self.settler.unchanged_for(drop.key) > limit:
            return self._reject(drop, self._missing(drop, missing), ticket, refs)
        wait = self._waits(drop)
        for name in missing:
            wait.add(printable(name), "empty" if lstat(drop.base / name) is not None else "missing")
        wait.deadline, wait.deadline_code = wait.changed_at + limit, "files_missing"
        return False

    def _wait_incomplete(self, drop: Drop, ticket: Ticket, incomplete: list[tuple[str, str]],
                         refs: Counter[str]) -> bool:
        grace = self.cfg.incomplete_grace_s
        if self.settler.unchanged_for(drop.key) > grace:
            name, why = incomplete[0]
            problem = JobRejected("media_incomplete", name=printable(name), why=why,
                                  minutes=f"{grace / 60:.0f}" if grace >= 60 else f"{grace / 60:.1f}")
            return self._reject(drop, problem, ticket, refs)
        wait = self._waits(drop)
        for name, why in incomplete:
            wait.add(printable(name), "incomplete", why)
        wait.deadline, wait.deadline_code = wait.changed_at + grace, "media_incomplete"
        return False

    def _read(self, drop: Drop, names: Names) -> Read:
        try:
            raw = checks.check_ticket_file(drop, self.cfg.max_ticket_bytes)
            ticket = tickets.parse(raw, drop.label, allowed_engines=self.cfg.allowed_engines,
                                   max_files=self.cfg.max_files_per_ticket, nested=drop.folder is not None)
            return names.resolve_ticket(drop.base, ticket, drop.label), None
        except JobRejected as exc:
            return None, exc
        except FileNotFoundError:
            return None, None

    def _missing(self, drop: Drop, missing: list[str]) -> JobRejected:
        empty = [printable(n) for n in missing if lstat(drop.base / n) is not None]
        if empty and len(empty) == len(missing):
            return JobRejected("file_empty", name=", ".join(empty))
        return JobRejected("files_missing", ticket=drop.label, missing=", ".join(printable(n) for n in missing),
                           minutes=f"{self.cfg.orphan_timeout_min:g}")

    def _accept(self, drop: Drop, ticket: Ticket, refs: Counter[str]) -> bool:
        engine = ticket.engine or self.config.worker.engine
        keys = [checks.job_key(drop, ticket, pair, engine) for pair in ticket.pairs]
        policy = self.cfg.duplicate_policy
        originals = [self.ledger.original(k) if policy != "process" else None for k in keys]
        tx = self.planner.accept(drop, ticket, keys, shared_names(drop, ticket, refs), originals, policy)
        for planned in tx.jobs:
            planned.notes = ticket.notes
        landed = self._commit(drop, tx, ticket, refs)
        for job, key in zip(landed, keys, strict=False):
            if job.state is not JobState.FAILED:
                self.ledger.record(key, job.id)
        return bool(landed)

    def _reject(self, drop: Drop, problem: JobRejected, ticket: Ticket | None, refs: Counter[str]) -> bool:
        files = ticket.files if ticket is not None else ()
        inputs = ({"audio": printable(ticket.pairs[0].audio), "video": printable(ticket.pairs[0].video)}
                  if ticket is not None and len(ticket.pairs) == 1 else {})
        external = shared_names(drop, ticket, refs) if ticket is not None else set()
        tx = self.planner.reject(drop, problem.code, problem.params, files, external, inputs,
                                 ticket.batch if ticket is not None else "")
        return bool(self._commit(drop, tx, ticket, refs))

    def _commit(self, drop: Drop, tx: Transaction, ticket: Ticket | None, refs: Counter[str]) -> list[Job]:
        try:
            landed = self.assembler.commit(tx, self._guard)
        except NotReady as exc:
            self.settler.restart(drop.key)  # not settled after all: a full window again before retrying
            self.held[drop.key] = (exc.name or drop.label, str(exc))
            self._waits(drop).add(*self.held[drop.key][:1], "open", str(exc))
            log.info("%s: waiting: %s", drop.label, exc)
            return []
        self.settler.forget(drop.key)
        self.held.pop(drop.key, None)
        if ticket is not None and drop.folder is None:
            refs.subtract(ticket.files)  # the next ticket sharing a file may now be its last user
        for job in landed:
            note = history.JobLog(job.id, job.path, log)
            if job.state is JobState.FAILED:
                report = job.report() or {}
                note.warning("rejected %s: %s", drop.label, report.get("message_en", report.get("code")))
            else:
                note.info("accepted %s into %s/", drop.label, job.state.folder)
            for line in ticket.notes if ticket is not None and job.state is not JobState.FAILED else ():
                note.info("note: %s", line)
        return landed

    def _guard(self, tx: Transaction) -> None:
        """Last look before the commit point: the layout is still real and no writer holds a source."""
        refused = layout.problem(self.share)
        if refused is not None:
            raise NotReady(refused)
        if self.writers is None:  # one look at /proc per scan, and only in scans that commit something
            self.writers = writers.Writers((os.path.realpath(self.share.root),))
        busy = self.writers.holding(tx.sources(self.share))
        if busy:
            path, who = next(iter(busy.items()))
            name = printable(os.path.basename(path))
            raise NotReady(f"{name} is still open for writing by {who}", name=name)

    def _sweep(self, drops: list[Drop], reads: dict[str, Read]) -> bool:
        """Move loose files no ticket named for orphan_timeout_min to failed/<name>-unclaimed/."""
        named = {n for d in drops if d.folder is None and (t := reads[d.key][0]) is not None for n in t.files}
        moved = False
        for name in self.sweeper.due(named):
            minutes = self.cfg.orphan_timeout_min
            tx = self.planner.unclaimed(name, minutes, lambda job_id: (self.share.failed / job_id).exists())
            try:
                landed = self.assembler.commit(tx, self._guard)
            except NotReady as exc:
                log.info("unclaimed %s stays in inbox/ for now: %s", printable(name), exc)
                continue
            for job in landed:
                history.JobLog(job.id, job.path, log).warning(
                    "moved %s out of inbox/: no ticket named it for %g minutes", printable(name), minutes)
            moved = True
        return moved

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
                  "disk_low": self.disk.low, "disk_free_bytes": self.disk.free,
                  "refusing": self.paused if self.paused and self.paused.startswith("layout:") else "",
                  "waiting": self.board.to_json()}
        try:
            atomic.write_json(self.share.roles / "intake.json", status, fsync=False)
        except OSError as exc:
            log.debug("could not write intake status: %s", exc)


class Companion(Protocol):
    """A loop the intake process runs beside its scans (the share's housekeeping, wired in by the shell)."""

    failure: BaseException | None  # a bug that stopped it: the role exits non-zero

    def start(self, stop: threading.Event, on_bug: Callable[[], None]) -> None: ...

    def join(self, timeout: float = 10.0) -> None: ...


def run(config: Config, args: argparse.Namespace, beside: Companion | None = None) -> int:
    """`lipsyncd intake` (through the shell, which passes the housekeeper as `beside`)."""
    stop = Stopper()
    # before recovery: a SIGTERM while it completes a crashed transaction finishes it, then exits 0
    stop.install()
    share = Share(Path(config.share.root))
    share.prepare()
    intake = Intake(config, share)
    intake.start()
    wake = threading.Event()
    hint = _hint(wake, config.intake.scan_interval_s)
    observer = _start_hint(share.inbox, hint) if config.intake.local_events else None
    log.info("intake watching %s (scan every %.1f s, settle %.1f s)", share.inbox,
             config.intake.scan_interval_s, config.intake.settle_s)
    notifier = Notifier()
    notifier.ready("watching inbox/")
    if beside is not None:
        beside.start(stop.event, stop.set)

    def step() -> bool:
        busy = intake.step()
        if intake.paused is None:  # a scan that really read the share: tell systemd we are alive
            notifier.alive("watching inbox/")
        return busy

    try:
        run_until_stopped(step, config.intake.scan_interval_s, stop, wake)
    finally:
        notifier.stopping()
        if beside is not None:
            beside.join()
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)
        hint.cancel()
    if beside is not None and beside.failure is not None:
        raise beside.failure  # a bug: cli's boundary logs it and exits non-zero
    log.info("intake stopped")
    return 0


def _hint(wake: threading.Event, interval: float) -> Any:
    from daemon.intake.wakeup import Hint

    # at most two early scans per interval, however many events a copy fires
    return Hint(wake, gap=max(0.25, interval / 2))


def _start_hint(inbox: Path, hint: Any) -> Any | None:
    from daemon.intake.wakeup import start

    return start(inbox, hint)
