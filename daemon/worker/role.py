"""The worker role: one step claims the oldest staged job, renders it and files the outcome.

Outcomes by who is at fault: JobRejected → failed/ with the reason, carry on; Interrupted (a stop
between chunks) → staging/, exit 0; EnvironmentFault → staging/, exit non-zero so the manager restarts
us; JobLost → discard our output; anything else is a bug → failed/ with the traceback, exit non-zero.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.core import heartbeat, lease, progress
from daemon.core.config import Config
from daemon.core.errors import EnvironmentFault, JobLost, JobRejected, ShareUnreachable
from daemon.core.job import WORK, Job
from daemon.core.lifecycle import Stopper, run_until_stopped
from daemon.core.notify import Notifier
from daemon.core.share import Share
from daemon.core.state import JobGone, JobState
from daemon.worker import claim, preview, publish, quarantine, renderers
from daemon.worker.attempt import Attempt
from daemon.worker.faults import disk_faults, share_faults
from daemon.worker.leasekeeper import LeaseKeeper
from daemon.worker.news import AttemptNews, Heartbeats
from daemon.worker.render import Interrupted, Renderer, RenderRequest

log = logging.getLogger(__name__)

RendererFor = Callable[[str], Renderer]


class Worker:
    """One worker process: each step() claims the next job, renders it and files its outcome."""

    def __init__(self, config: Config, share: Share, renderer_for: RendererFor, ident: lease.Identity,
                 stop: Stopper, gpu: str = "") -> None:
        self.config = config
        self.share = share
        self.renderer_for = renderer_for
        self.ident = ident
        self.stop = stop
        # a non-job in staging/ must have been quiet for a lease period: a copy in progress is left alone
        self.queue = claim.Queue(share.root, share.now, config.worker.lease_s)
        self.language = config.general.language
        self.notifier = Notifier()
        self.beats = Heartbeats(share.internal, ident, gpu)
        self._next_takeover = time.monotonic()  # start() recovers first; then every lease_s / 4

    def start(self) -> None:
        self.beats.send("loading")
        self._take_over_expired()

    def step(self) -> bool:
        self._take_over_expired()
        job = self.queue.claim(self.ident)
        if job is None:
            self.beats.send("idle")
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
        attempt = Attempt.of(job, log)
        if (attempt.path / attempt.spec.output).exists():
            self._finish_published(attempt)
            return
        attempt.log.info("claimed by %s/%s (attempt %d, engine %s)", self.ident.host, self.ident.worker,
                         attempt.number, attempt.spec.engine)
        keeper = LeaseKeeper(attempt.path, self.config.worker.lease_s / 4)
        try:
            self._file_outcome(attempt)
        finally:
            keeper.stop()

    def _finish_published(self, attempt: Attempt) -> None:
        # only publish() renames into the final name, after fsync and a probe: the result is complete
        # and a crash lost at most its report and the move; rendering again would trip publish()'s
        # never-overwrite guard and fail a finished job
        attempt.log.info("result already published before a crash: finishing the move to done/")
        try:
            with disk_faults():
                self._finish(attempt, {"published_before_crash": True})
        except JobLost as exc:
            attempt.log.warning("%s", exc)
        except EnvironmentFault as exc:
            self._requeue(attempt, f"environment fault: {exc}")
            raise

    def _file_outcome(self, attempt: Attempt) -> None:
        """Render and publish, then file the outcome by who is at fault (the module docstring's list)."""
        try:
            self._render_unless_lost(attempt)
        except Interrupted:
            self._requeue(attempt, "stop requested: put back in the queue")
        except JobRejected as exc:
            if self.stop.is_set():  # a stop signal may have reached a child: not the producer's fault
                self._requeue(attempt, f"stop requested while it read as bad input ({exc}): put back")
            else:
                self._fail(attempt, exc.code, exc.params)
        except JobLost as exc:
            attempt.log.warning("%s; discarding our output", exc)
        except EnvironmentFault as exc:
            self._requeue(attempt, f"environment fault: {exc}")
            raise
        except Exception as exc:
            self._fail(attempt, "internal_error", {"detail": f"{type(exc).__name__}: {exc}"}, traceback.format_exc())
            raise

    def _render_unless_lost(self, attempt: Attempt) -> None:
        try:
            with disk_faults():
                self._render_and_publish(attempt)
        except Exception:
            # a dead share or a takeover pulls the inputs from under us: whatever failed then is not
            # the job's fault (ShareUnreachable or JobLost replace it)
            inputs = (attempt.path / attempt.spec.audio, attempt.path / attempt.spec.video)
            claim.raise_if_lost(attempt.path, self.ident, inputs)
            raise

    def _render_and_publish(self, attempt: Attempt) -> None:
        spec, path = attempt.spec, attempt.path
        part = path / publish.part_name(spec.output, attempt.number)
        request = RenderRequest(job_id=attempt.id, attempt=attempt.number, audio=path / spec.audio,
                                video=path / spec.video, output=part, workdir=path / WORK,
                                engine=spec.engine, options=dict(spec.options))
        request.workdir.mkdir(exist_ok=True)
        self.beats.send("working", attempt.id)
        news = AttemptNews(attempt, self.beats, self.notifier)
        stats = self.renderer_for(spec.engine).render(request, news, self.stop.is_set)
        preview.require_a_face(path, spec.engine, request.video, stats, self.config.media, part)
        self.beats.send("finalizing", attempt.id)
        stats.update(publish.verify(part, self.config.media.ffprobe, self.config.media.probe_timeout_s))
        final = path / spec.output
        try:
            publish.publish(part, final, path, self.ident)
        except FileNotFoundError:
            # our folder was renamed away under us: a takeover after our lease expired
            raise JobLost(f"{attempt.id}: the job folder moved while we published (taken over)") from None
        preview.write_done(path, final, request.video, stats, self.share.facecache, self.config.media)
        self._finish(attempt, stats)

    def _finish(self, attempt: Attempt, stats: dict[str, Any]) -> None:
        """Report, clean up and move a job whose result is published under its final name."""
        path = attempt.path
        if (attempt.job.report() or {}).get("state") != "done":  # else written before a crash that lost the move
            attempt.write_success(stats)
        shutil.rmtree(path / WORK, ignore_errors=True)  # our resume state; the result is published
        (path / progress.PROGRESS).unlink(missing_ok=True)  # news of a running job only
        for stale in path.glob(".*.part.*"):  # partial outputs of attempts that crashed
            stale.unlink(missing_ok=True)
        try:
            attempt.move(JobState.DONE, "finished")
        except JobGone:
            raise JobLost(f"{attempt.id}: taken over just before publication") from None
        attempt.log.info("done in %.1f s: %s", time.time() - attempt.started, attempt.spec.output)

    def _requeue(self, attempt: Attempt, why: str) -> None:
        try:
            moved = self._move(attempt, JobState.STAGING, why)
        except ShareUnreachable as exc:
            # nobody took the job: it stays claimed under a lease nobody renews, so another host takes
            # it over after lease_s, or our own recovery puts it back once the share answers again
            log.error("%s: the share is unreachable (%s): the job stays in processing/; another worker "
                      "takes it over after worker.lease_s = %g s", attempt.id, exc, self.config.worker.lease_s)
            return
        if moved:
            attempt.log.warning("%s", why)

    def _fail(self, attempt: Attempt, code: str, params: dict[str, Any], trace: str | None = None) -> None:
        try:
            with disk_faults():
                attempt.write_failure(code, params, self.language, attempt.timings(), trace)
        except EnvironmentFault as exc:
            # never in failed/ without its reason: back to the queue, decided again once there is room
            self._requeue(attempt, f"cannot write why it failed ({code}): {exc}")
            raise
        moved = self._move(attempt, JobState.FAILED, code)
        if moved is not None:
            attempt.log.error("failed: %s", (moved.report() or {}).get("message_en", code))

    @staticmethod
    def _move(attempt: Attempt, to: JobState, why: str) -> Job | None:
        """Move a job we hold; None if a takeover moved it first (then the other owner decides)."""
        try:
            return attempt.move(to, why)
        except JobGone:
            attempt.log.warning("could not move to %s/ (%s): the job was already taken over", to.value, why)
            return None


def run(config: Config, args: argparse.Namespace) -> int:
    """`lipsyncd worker`: pin the GPU, load the default engine, then claim jobs until stopped."""
    renderers.pin_gpu(args.gpu)  # before anything initialises CUDA
    renderer_for = renderers.Renderers(config)
    renderer_for.preload(config.worker.engine)  # a missing or wrong checkpoint: ConfigError, exit 78
    share = Share(Path(config.share.root))
    share.prepare()
    stop = Stopper()
    stop.install()
    name = args.name or heartbeat.worker_name(args.gpu)
    ident = lease.this_process(name, config.general.host_name)
    worker = Worker(config, share, renderer_for, ident, stop, gpu=args.gpu or "")
    worker.start()
    log.info("worker %s ready on %s", name, share.root)
    worker.notifier.ready(f"worker {name} ready")
    try:
        with share_faults():
            run_until_stopped(worker.step, config.worker.poll_interval_s, stop)
    finally:
        worker.notifier.stopping()
        worker.beats.send("stopping")
    log.info("worker %s stopped", name)
    return 0
