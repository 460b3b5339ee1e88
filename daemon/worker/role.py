"""The worker role: one step claims the oldest staged job, renders it and files the outcome.

Outcomes by who is at fault: JobRejected → failed/ with the reason, carry on; Interrupted (a stop
between chunks) → staging/, exit 0; EnvironmentFault → staging/, exit non-zero so the manager restarts
us; JobLost → discard our output; anything else is a bug → failed/ with the traceback, exit non-zero.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from daemon.core import heartbeat, lease, progress, report, state
from daemon.core.config import Config
from daemon.core.errors import EnvironmentFault, JobLost, JobRejected, ShareUnreachable, is_out_of_space, is_unreachable
from daemon.core.history import JobLog
from daemon.core.job import WORK, Job, JobSpec
from daemon.core.lifecycle import Stopper, run_until_stopped
from daemon.core.notify import Notifier
from daemon.core.share import Share
from daemon.core.state import JobGone, JobState
from daemon.worker import claim, preview, publish, quarantine
from daemon.worker.render import Interrupted, Progress, Renderer, RenderRequest

log = logging.getLogger(__name__)

RendererFor = Callable[[str], Renderer]


class Worker:
    def __init__(self, config: Config, share: Share, renderer_for: RendererFor, ident: lease.Identity,
                 stop: Stopper) -> None:
        self.config = config
        self.share = share
        self.renderer_for = renderer_for
        self.ident = ident
        self.stop = stop
        # a non-job in staging/ must have been quiet for a lease period: a copy in progress is left alone
        self.queue = claim.Queue(share.root, share.now, config.worker.lease_s)
        self.language = config.general.language
        self.notifier = Notifier()
        self._next_takeover = time.monotonic()  # start() recovers first; then every lease_s / 4
        self.gpu = ""  # the --gpu this worker was started with, shown on the status page

    def start(self) -> None:
        self.beat("loading")
        self._take_over_expired()

    def step(self) -> bool:
        self._take_over_expired()
        job = self.queue.claim(self.ident)
        if job is None:
            self.beat("idle")
            self.notifier.alive("idle")
            return False
        self.process(job)
        return True

    def _take_over_expired(self) -> None:
        """Requeue jobs whose owner died here or whose lease expired anywhere (checked every lease_s / 4)."""
        now = time.monotonic()
        if now < self._next_takeover:
            return
        self._next_takeover = now + self.config.worker.lease_s / 4
        for job in claim.recover(self.share, self.ident, self.config.worker.max_attempts,
                                 self.config.worker.lease_s, self.language):
            log.warning("%s: taken over from a dead or expired owner; now in %s/", job.id, job.state.folder)

    def process(self, job: Job) -> None:
        problem = quarantine.spec_problem(job)
        if problem is not None:
            quarantine.quarantine(job, problem, self.language)
            return
        note = JobLog(job.id, job.path, log)
        spec = job.spec()
        attempt = job.attempt()
        final = job.path / spec.output
        if final.exists():
            # only publish() renames into the final name, after fsync and a probe: the result is complete
            # and a crash lost at most its report and the move; rendering again would trip publish()'s
            # never-overwrite guard and fail a finished job
            note.info("result already published before a crash: finishing the move to done/")
            try:
                with _disk_faults():
                    self._finish(job, spec, attempt, note, time.time(), {"published_before_crash": True})
            except JobLost as exc:
                note.warning("%s", exc)
            except EnvironmentFault as exc:
                self._requeue(job, note, f"environment fault: {exc}")
                raise
            return
        note.info("claimed by %s/%s (attempt %d, engine %s)", self.ident.host, self.ident.worker, attempt,
                  spec.engine)
        keeper = _LeaseKeeper(job.path, self.config.worker.lease_s / 4)
        started = time.time()
        try:
            try:
                with _disk_faults():
                    self._render_and_publish(job, spec, attempt, note, started)
            except Exception:
                # a dead share or a takeover pulls the inputs from under us: whatever failed then is not
                # the job's fault (ShareUnreachable or JobLost replace it)
                claim.raise_if_lost(job.path, self.ident, (job.path / spec.audio, job.path / spec.video))
                raise
        except Interrupted:
            self._requeue(job, note, "stop requested: put back in the queue")
        except JobRejected as exc:
            if self.stop.is_set():  # a stop signal may have reached a child: not the producer's fault
                self._requeue(job, note, f"stop requested while it read as bad input ({exc}): put back")
            else:
                self._fail(job, spec, attempt, note, exc.code, exc.params, started)
        except JobLost as exc:
            note.warning("%s; discarding our output", exc)
        except EnvironmentFault as exc:
            self._requeue(job, note, f"environment fault: {exc}")
            raise
        except Exception as exc:
            self._fail(job, spec, attempt, note, "internal_error", {"detail": f"{type(exc).__name__}: {exc}"},
                       started, traceback.format_exc())
            raise
        finally:
            keeper.stop()

    def _render_and_publish(self, job: Job, spec: JobSpec, attempt: int, note: JobLog, started: float) -> None:
        part = job.path / publish.part_name(spec.output, attempt)
        request = RenderRequest(job_id=job.id, attempt=attempt, audio=job.path / spec.audio,
                                video=job.path / spec.video, output=part, workdir=job.path / WORK,
                                engine=spec.engine, options=dict(spec.options))
        request.workdir.mkdir(exist_ok=True)
        self.beat("working", job.id)
        stats = self.renderer_for(spec.engine).render(request, self._progress(job, attempt), self.stop.is_set)
        preview.require_a_face(job.path, spec.engine, request.video, stats, self.config.media, part)
        self.beat("finalizing", job.id)
        stats.update(publish.verify(part, self.config.media.ffprobe, self.config.media.probe_timeout_s))
        final = job.path / spec.output
        try:
            publish.publish(part, final, job.path, self.ident)
        except FileNotFoundError:
            # our folder was renamed away under us: a takeover after our lease expired
            raise JobLost(f"{job.id}: the job folder moved while we published (taken over)") from None
        preview.write_done(job.path, final, request.video, stats, self.share.facecache, self.config.media)
        self._finish(job, spec, attempt, note, started, stats)

    def _finish(self, job: Job, spec: JobSpec, attempt: int, note: JobLog, started: float,
                stats: dict[str, Any]) -> None:
        """Report, clean up and move a job whose result is published under its final name."""
        timings = {"accepted_at": spec.accepted_at, "claimed_at": started, "render_s": time.time() - started}
        if (job.report() or {}).get("state") != "done":  # else written before a crash that lost the move
            report.write_success(job.path, job_id=job.id, output=spec.output, attempts=attempt, timings=timings,
                                 inputs={"audio": spec.audio, "video": spec.video}, batch=spec.batch,
                                 stats=stats)
        shutil.rmtree(job.path / WORK, ignore_errors=True)  # our resume state; the result is published
        (job.path / progress.PROGRESS).unlink(missing_ok=True)  # news of a running job only
        for stale in job.path.glob(".*.part.*"):  # partial outputs of attempts that crashed
            stale.unlink(missing_ok=True)
        try:
            moved = state.move(job, JobState.DONE, "finished")
        except JobGone:
            raise JobLost(f"{job.id}: taken over just before publication") from None
        note.where = moved.path
        note.info("done in %.1f s: %s", time.time() - started, spec.output)

    def _progress(self, job: Job, attempt: int) -> Callable[[Progress], None]:
        pacer = progress.Pacer()
        rate: list[Progress] = []  # the last news with a rate: a batch's news carries its fps and ETA on

        def on_progress(p: Progress) -> None:
            if not pacer.due((p.phase, p.chunk)):
                return  # a batch within a chunk, less than a second after the last news
            if p.fps:
                rate[:] = [p]
            elif rate and p.phase == "render":
                p = dataclasses.replace(p, fps=rate[0].fps, eta_s=rate[0].eta_s)
            if not lease.touch(job.path):
                raise JobLost(f"{job.id}: our lease is gone (taken over by another worker)")
            try:
                progress.write(job.path, progress.record(job.id, attempt, p.chunk, p.chunks, p.frames_done,
                                                         p.frames_total, p.fps, p.eta_s, p.phase))
            except OSError as exc:  # news for people, not state: never fail a job over it
                log.warning("%s: could not write progress.json: %s", job.id, exc)
            # muxing and checking the result is no chunk: it has the finalizing limit, not the chunk limit
            self.beat("finalizing" if p.phase == "finalize" else "working", job.id, p)
            self.notifier.alive(f"{job.id}: chunk {p.chunk}/{p.chunks}")

        return on_progress

    def _requeue(self, job: Job, note: JobLog, why: str) -> None:
        try:
            moved = self._move(job, JobState.STAGING, why, note)
        except ShareUnreachable as exc:
            # nobody took the job: it stays claimed under a lease nobody renews, so another host takes
            # it over after lease_s, or our own recovery puts it back once the share answers again
            log.error("%s: the share is unreachable (%s): the job stays in processing/; another worker "
                      "takes it over after worker.lease_s = %g s", job.id, exc, self.config.worker.lease_s)
            return
        if moved:
            note.warning("%s", why)

    def _fail(self, job: Job, spec: JobSpec, attempt: int, note: JobLog, code: str, params: dict[str, Any],
              started: float, trace: str | None = None) -> None:
        try:
            with _disk_faults():
                report.write_failure(job.path, job_id=job.id, code=code, params=params, language=self.language,
                                     inputs={"audio": spec.audio, "video": spec.video}, attempts=attempt,
                                     batch=spec.batch, traceback=trace,
                                     timings={"accepted_at": spec.accepted_at, "claimed_at": started})
        except EnvironmentFault as exc:
            # never in failed/ without its reason: back to the queue, decided again once there is room
            self._requeue(job, note, f"cannot write why it failed ({code}): {exc}")
            raise
        moved = self._move(job, JobState.FAILED, code, note)
        if moved is not None:
            note.error("failed: %s", (moved.report() or {}).get("message_en", code))

    @staticmethod
    def _move(job: Job, to: JobState, why: str, note: JobLog) -> Job | None:
        """Move a job we hold; None if a takeover moved it first (then the other owner decides)."""
        try:
            moved = state.move(job, to, why)
        except JobGone:
            note.warning("could not move to %s/ (%s): the job was already taken over", to.value, why)
            return None
        note.where = moved.path
        return moved

    def beat(self, phase: str, job: str | None = None, p: Progress | None = None) -> None:
        fields: dict[str, Any] = {}
        if p is not None:
            fields = {"chunk": p.chunk, "chunks": p.chunks, "frames_done": p.frames_done,
                      "frames_total": p.frames_total, "fps": p.fps, "eta_s": p.eta_s, "step": p.phase}
        beat = heartbeat.Heartbeat(host=self.ident.host, worker=self.ident.worker, pid=self.ident.pid,
                                   pid_start=self.ident.pid_start, phase=phase, job=job,
                                   extra={"gpu": self.gpu} if self.gpu else {}, **fields)
        try:
            heartbeat.write(self.share.internal, beat)
        except OSError as exc:
            log.warning("could not write heartbeat: %s", exc)


@contextlib.contextmanager
def _disk_faults() -> Iterator[None]:
    """Our own writes refused for lack of space are the machine's fault, never the job's."""
    try:
        yield
    except OSError as exc:
        if is_out_of_space(exc):
            raise EnvironmentFault(f"disk full: {exc.strerror}: {exc.filename}") from exc
        raise


@contextlib.contextmanager
def share_faults() -> Iterator[None]:
    """An OSError that means "the share is not answering" is the environment's fault (exit 70)."""
    try:
        yield
    except OSError as exc:
        if is_unreachable(exc):
            raise ShareUnreachable(f"the share is unreachable: {exc.strerror}: {exc.filename}") from exc
        raise


class _LeaseKeeper:
    """Refreshes the lease while a long chunk runs; a SIGSTOPped worker stops refreshing with it."""

    def __init__(self, job_dir: Path, every_s: float) -> None:
        self._stop = threading.Event()
        self._dir = job_dir
        self._thread = threading.Thread(target=self._run, args=(every_s,), name="lease", daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        warned = False
        while not self._stop.wait(every_s):
            try:
                if not lease.touch(self._dir):
                    return
            except (OSError, ShareUnreachable) as exc:  # the share is away: keep trying, it may come back
                if not warned:
                    log.warning("%s: cannot renew the lease: %s", self._dir.name.split("@", 1)[0], exc)
                warned = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run(config: Config, args: argparse.Namespace, renderer_for: RendererFor) -> int:
    share = Share(Path(config.share.root))
    share.prepare()
    stop = Stopper()
    stop.install()
    name = getattr(args, "name", None) or heartbeat.worker_name(getattr(args, "gpu", None))
    worker = Worker(config, share, renderer_for, lease.this_process(name, config.general.host_name), stop)
    worker.gpu = str(getattr(args, "gpu", None) or "")
    worker.start()
    log.info("worker %s ready on %s", name, share.root)
    worker.notifier.ready(f"worker {name} ready")
    try:
        with share_faults():
            run_until_stopped(worker.step, config.worker.poll_interval_s, stop)
    finally:
        worker.notifier.stopping()
        worker.beat("stopping")
    log.info("worker %s stopped", name)
    return 0
