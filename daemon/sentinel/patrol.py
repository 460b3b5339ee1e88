"""One pass of the watchdog: survey the share, judge each worker, act on verdict changes, raise alerts.

Acts only on changes: a stall restarts the worker through the process manager and alerts once per
incident (reminders every `alerts.renotify_min`), a recovery says so once, a give-up asks for a human.
The pass never waits on HTTP (the outbox sends) and waits on the share at most `share_timeout_s`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from daemon.core import history
from daemon.core.config import Config
from daemon.core.heartbeat import Heartbeat
from daemon.sentinel import status
from daemon.sentinel.alerts import wording
from daemon.sentinel.alerts.alert import Severity, cut_utf8
from daemon.sentinel.alerts.outbox import Outbox
from daemon.sentinel.cpu import CpuMeter
from daemon.sentinel.gpu import GpuLost, NvmlProbe
from daemon.sentinel.incidents import Change, IncidentBook
from daemon.sentinel.lane import Lane
from daemon.sentinel.managers import hand_start
from daemon.sentinel.managers.supervision import ProcessManager
from daemon.sentinel.retry import RestartRetry
from daemon.sentinel.survey import FailedJob, Survey, Surveyor
from daemon.sentinel.verdict import Health, Limits, Verdict, judge

log = logging.getLogger(__name__)


@dataclass
class Watch:
    """What the watchdog remembers about one worker between passes."""

    key: str  # <host>--<worker>, as in the heartbeat file name
    worker: str
    verdict: Verdict | None = None
    restart_at: float | None = None
    restarts: list[float] = field(default_factory=list)
    looped: bool = False  # our own restarts did not help: stop restarting, a human must look
    restarts_total: int = 0  # since this watchdog started, for the metrics counter
    retry: RestartRetry | None = None  # restarts the manager refused, in a row (see _restart_refused)


class Patrol:
    def __init__(self, config: Config, manager: ProcessManager, outbox: Outbox, lane: Lane, host: str,
                 language: str, gpu: NvmlProbe | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.manager, self.outbox, self.lane = config.watchdog, manager, outbox, lane
        self.root, self.host, self.language, self.gpu, self.clock = config.root, host, language, gpu, clock
        self.limits = Limits.from_config(config.watchdog)
        self.surveyor = Surveyor(config.root)
        self.cpu = CpuMeter()  # a quiet worker still using CPU is slow, not stalled
        self.book = IncidentBook(config.alerts.renotify_min * 60)
        self.watches: dict[str, Watch] = {}
        self.titles: dict[str, str] = {}  # open incident key → the title it was raised with
        self.failed: list[FailedJob] = []
        self.failed_since: float | None = None
        self.share_down_since: float | None = None
        self.share_error = ""
        self._survey: Future[Survey] | None = None
        self._survey_waited = False
        self.started_at = clock()
        self.survey: Survey | None = None  # the last one that answered, for status and metrics
        self.finished = {"done": 0, "failed": 0}
        self.render_s_sum, self.render_s_count = 0.0, 0
        self.gpu_readings: list[dict[str, object]] = []

    # --- the pass -----------------------------------------------------------------------------------
    def step(self) -> Survey | None:
        """One pass; returns the survey, or None when the share did not answer in time."""
        now = self.clock()
        survey = self._take_survey(now)
        self.manager.poll()
        if survey is not None:
            # judging workers needs fresh heartbeats: while the share hangs, they hang on it too and a
            # restart would not help, so only the share alert runs
            self._judge_workers(survey, now)
            self._tally(survey)
            self._collect_failures(survey, now)
            self._queue_and_disk(survey, now)
            self._intake(survey, now)
        self._flush_failures(now)
        self._condition("share", self._share_down(now), "share_unreachable", Severity.WARNING, now,
                        root=str(self.root), minutes=_minutes(now - (self.share_down_since or now)),
                        detail=self.share_error)
        self._gpus(now)
        self._channels(now)
        return survey

    def _take_survey(self, now: float) -> Survey | None:
        if self._survey is None:
            self._survey, self._survey_waited = self.lane.submit(self.surveyor.take), False
        try:
            # wait the full timeout only once per survey; later passes just look whether it finished
            survey = self._survey.result(timeout=0 if self._survey_waited else self.cfg.share_timeout_s)
        except FutureTimeout:
            self._survey_waited = True
            self._mark_share_down(now, f"no answer for {self.lane.stuck_for():.0f} s")
            return None
        except OSError as exc:
            self._survey = None
            self._mark_share_down(now, f"{type(exc).__name__}: {exc.strerror or exc}")
            return None
        self._survey = None
        if self.share_down_since is not None:
            log.info("share answers again after %.0f s", now - self.share_down_since)
        self.share_down_since, self.share_error = None, ""
        return survey

    def _mark_share_down(self, now: float, detail: str) -> None:
        if self.share_down_since is None:
            self.share_down_since = now
            log.warning("share %s not answering: %s", self.root, detail)
        self.share_error = detail

    def _share_down(self, now: float) -> bool:
        since = self.share_down_since
        return since is not None and now - since >= self.cfg.share_unreachable_min * 60

    # --- workers ------------------------------------------------------------------------------------
    def _judge_workers(self, survey: Survey, now: float) -> None:
        beats = {b.worker: b for b in survey.beats if b.host == self.host}
        names = set(beats) | set(self.manager.workers()) | {w.worker for w in self.watches.values()}
        for worker in sorted(names):
            watch = self.watches.setdefault(worker, Watch(f"{self.host}--{worker}", worker))
            beat = beats.get(worker)
            log_mtime = survey.log_mtimes.get(beat.job) if beat is not None and beat.job else None
            busy = self._cpu_share(watch, beat, now)
            verdict = judge(beat, log_mtime, self.manager.view(worker), self.limits, now, watch.restart_at, busy)
            self._act(watch, verdict, survey, now)

    def _cpu_share(self, watch: Watch, beat: Heartbeat | None, now: float) -> float | None:
        """The share of a CPU the worker's process tree used over the last half chunk limit (this host's)."""
        if beat is None or beat.phase != "working":
            return None
        return self.cpu.recent_share(watch.key, beat.pid, beat.pid_start, now, self.limits.chunk / 2)

    def _act(self, watch: Watch, verdict: Verdict, survey: Survey, now: float) -> None:
        before = watch.verdict.health if watch.verdict else None
        watch.verdict = verdict
        if verdict.health is not before:
            about = f"{verdict.job}: " if verdict.job else ""  # lines about a job start with its id
            log.info("%sworker %s: %s → %s (%s, quiet %.0f s of %.0f s)", about, watch.key,
                     before.value if before else "-", verdict.health.value, verdict.reason,
                     verdict.quiet_s, verdict.limit_s)
        action = ""
        if verdict.health is Health.HEALTHY:
            watch.looped = False
            if not verdict.grace:  # the restarted process has rendered: the next stall is a new one
                watch.restart_at = None
            self._refusals_over(watch, now)
        elif verdict.health is Health.STALLED and not watch.looped:
            window = self.cfg.restart_window_min * 60
            watch.restarts = [t for t in watch.restarts if now - t < window]
            if len(watch.restarts) >= self.cfg.max_restarts:
                watch.looped = True
                log.error("worker %s: %d restarts in %.0f min did not help; giving up", watch.key,
                          len(watch.restarts), self.cfg.restart_window_min)
            elif self._retry(watch).due(now):
                action = self._restart(watch, verdict, survey, now)
        self._worker_alerts(watch, verdict, action, now)

    def _restart(self, watch: Watch, verdict: Verdict, survey: Survey, now: float) -> str:
        reason = (f"watchdog: {verdict.reason}, no progress for {verdict.quiet_s:.0f} s "
                  f"(limit {verdict.limit_s:.0f} s)")
        # the job's history hears of the order first: the restarted worker's recovery reads it to count
        # this as a stall restart, not a crash (worker/restarts.py), and must not race it
        self._record_restart(watch, verdict, survey, "watchdog_restart")
        ok = self.manager.restart(watch.worker, reason)
        if not ok:  # no restart happened: the worker's recovery must not count one
            self._record_restart(watch, verdict, survey, "watchdog_restart_refused")
        if not ok and self.manager.kind != "none":
            return self._restart_refused(watch, verdict, now)
        self._refusals_over(watch, now)
        watch.restarts.append(now)
        watch.restarts_total += 1
        watch.restart_at = now
        if ok:
            return f"Restart requested through {self.manager.kind}."
        return "No process manager configured: restart it by hand."

    # --- restarts the manager refused: no grace, retry with back-off, then a human --------
    def _retry(self, watch: Watch) -> RestartRetry:
        if watch.retry is None:
            watch.retry = RestartRetry(self.cfg.restart_retry_s, self.cfg.restart_retry_max_s,
                                       self.cfg.restart_failures_alert)
        return watch.retry

    def _restart_refused(self, watch: Watch, verdict: Verdict, now: float) -> str:
        """A refused restart is no restart: no start-up grace, no count towards max_restarts."""
        retry = self._retry(watch)
        wait = retry.refused(now, getattr(self.manager, "error", ""))
        log.error("worker %s: %s refused the restart (%d in a row): %s; asking again in %.0f s", watch.key,
                  self.manager.kind, retry.failures, retry.error, wait)
        if retry.needs_human:
            self._condition(f"restartfail:{watch.key}", True, "restart_failed", Severity.CRITICAL, now,
                            worker=watch.worker, reason=verdict.reason, manager=self.manager.kind,
                            attempts=retry.failures, error=retry.error, how=hand_start(self.manager, watch.worker),
                            retry=f"{wait:.0f}")
        return f"Restart through {self.manager.kind} FAILED: {retry.error}. Asking again in {wait:.0f} s."

    def _refusals_over(self, watch: Watch, now: float) -> None:
        if watch.retry is not None and watch.retry.failures:
            log.info("worker %s: %s accepts restarts again", watch.key, self.manager.kind)
            watch.retry.accepted()
        if self.book.is_open(f"restartfail:{watch.key}"):
            self._condition(f"restartfail:{watch.key}", False, "restart_failed", Severity.CRITICAL, now)

    def _record_restart(self, watch: Watch, verdict: Verdict, survey: Survey, event: str) -> None:
        folder = survey.processing.get(verdict.job) if verdict.job else None
        if folder is None:
            return
        fields = {"by": "watchdog", "worker": watch.worker, "phase": verdict.phase,
                  "quiet_s": round(verdict.quiet_s, 1), "limit_s": verdict.limit_s, "manager": self.manager.kind}
        self.lane.post(lambda: history.append(folder, event, **fields), f"job {verdict.job} history")

    def _worker_alerts(self, watch: Watch, verdict: Verdict, action: str, now: float) -> None:
        stall_key, gone_key = f"stall:{watch.key}", f"gaveup:{watch.key}"
        healthy = verdict.health is Health.HEALTHY
        gave_up = verdict.health is Health.GAVE_UP or watch.looped
        params = {"host": self.host, "worker": watch.worker, "phase": verdict.phase or "-",
                  "job": verdict.job or "-", "quiet": f"{verdict.quiet_s:.0f}",
                  "limit": f"{verdict.limit_s:.0f}"}
        opened_at = min(t for t in (self.book.since(stall_key), self.book.since(gone_key), now) if t)
        changes = [
            (gone_key, self.book.update(gone_key, gave_up or (self.book.is_open(gone_key) and not healthy),
                                        now)),
            (stall_key, self.book.update(stall_key, verdict.health is Health.STALLED
                                         or (self.book.is_open(stall_key) and not healthy), now)),
        ]
        if changes[0][1] in (Change.OPENED, Change.REMINDER):
            why = (f"{len(watch.restarts)} restarts within {self.cfg.restart_window_min:g} min did not help"
                   if watch.looped else f"{self.manager.kind} reports {verdict.reason}")
            self._send("gave_up", gone_key, Severity.CRITICAL, now, why=why,
                       how=hand_start(self.manager, watch.worker), **params)
        if changes[1][1] is Change.OPENED:
            self._send("stalled", stall_key, Severity.WARNING, now, action=action, **params)
        elif changes[1][1] is Change.REMINDER:
            self._send("still_stalled", stall_key, Severity.WARNING, now, health=verdict.health.value,
                       reason=verdict.reason, minutes=_minutes(now - opened_at), **params)
        if any(c is Change.RESOLVED for _k, c in changes):
            self._send("recovered", stall_key, Severity.RESOLVED, now, minutes=_minutes(now - opened_at),
                       **params)

    # --- other conditions ---------------------------------------------------------------------------
    def _tally(self, survey: Survey) -> None:
        self.survey = survey
        self.finished["failed"] += len(survey.new_failed)
        self.finished["done"] += len(survey.new_done)
        for job in survey.new_done:
            if job.render_s is not None:
                self.render_s_sum += job.render_s
                self.render_s_count += 1

    def _collect_failures(self, survey: Survey, now: float) -> None:
        for job in survey.new_failed:
            log.warning("%s: failed: %s: %s", job.job, job.code, job.message)  # job id first: one grep per job
            self.failed.append(job)
            self.failed_since = self.failed_since or now

    def _flush_failures(self, now: float) -> None:
        if not self.failed or self.failed_since is None or now - self.failed_since < self.cfg.failed_window_s:
            return
        lines = "\n".join(cut_utf8(f"- {j.job}{f' ({j.batch})' if j.batch else ''}: {j.code}: {j.message}",
                                   300) for j in self.failed)
        self._send("jobs_failed", f"failed:{self.failed[0].job}", Severity.WARNING, now,
                   count=len(self.failed), lines=lines, host=self.host)
        self.failed, self.failed_since = [], None

    def _queue_and_disk(self, survey: Survey, now: float) -> None:
        oldest = survey.oldest_queued
        waiting = oldest is not None and now - oldest[1] > self.cfg.queue_wait_min * 60
        self._condition("queue", waiting, "queue_waiting", Severity.WARNING, now,
                        job=oldest[0] if oldest else "-", queued=survey.queued,
                        minutes=_minutes(now - oldest[1]) if oldest else 0)
        free = survey.disk_free_bytes
        # intake's own disk guard (intake.pause_below_free_gb) may trip first: a paused intake is news too
        paused = bool((survey.intake or {}).get("disk_low"))
        low = paused or (free is not None and free < self.cfg.disk_free_min_gb * 1e9)
        self._condition("disk", low, "disk_low", Severity.WARNING, now,
                        free_gb=f"{(free or 0) / 1e9:.2f}", min_gb=f"{self.cfg.disk_free_min_gb:g}",
                        intake=wording.say("intake_paused_disk" if paused else "intake_running", self.language)[1])

    def _intake(self, survey: Survey, now: float) -> None:
        mtime = survey.intake_mtime
        # intake.json's mtime is stamped by the share's clock; the survey moved it onto ours
        # a missing intake.json counts from our own start, so starting before intake is no incident
        stale = now - (mtime if mtime is not None else self.started_at) > self.cfg.intake_stale_s
        detail = "never written" if mtime is None else f"pid {(survey.intake or {}).get('pid', '?')}"
        self._condition("intake", stale, "intake_down", Severity.WARNING, now,
                        age=f"{now - mtime:.0f}" if mtime else "∞", detail=detail)
        # intake refuses to touch a share whose state folder became a link or a mount
        refusing = str((survey.intake or {}).get("refusing") or "")
        self._condition("intake_refusing", bool(refusing), "intake_refusing", Severity.CRITICAL, now,
                        detail=refusing.removeprefix("layout: "))

    def _gpus(self, now: float) -> None:
        if self.gpu is None or not self.gpu.available or not self.cfg.gpu_check:
            return
        try:
            readings = self.gpu.read()
            lost = ""
        except GpuLost as exc:
            readings, lost = [], str(exc)
        self.gpu_readings = [{"host": self.host, "index": r.index, "uuid": r.uuid, "used": r.used, "total": r.total}
                             for r in readings]
        self._condition("gpu", bool(lost), "gpu_lost", Severity.CRITICAL, now, detail=lost)
        for r in readings:
            full = r.used_pct >= self.cfg.gpu_memory_full_pct
            self._condition(f"gpumem:{r.index}", full, "gpu_memory_full", Severity.WARNING, now,
                            index=r.index, used_gb=f"{r.used / 1e9:.1f}",
                            total_gb=f"{r.total / 1e9:.1f}", pct=f"{r.used_pct:.0f}")

    def _channels(self, now: float) -> None:
        for name, health in self.outbox.health().items():
            broken = health["state"] == "broken"
            hint = health.get("hint") or (
                "This host's clock is off: fix NTP/chrony; signatures are only valid within an hour."
                if health["clock_skew"] else "Check its webhook, secret and keyword in the config.")
            self._condition(f"channel:{name}", broken, "channel_broken", Severity.WARNING, now, channel=name,
                            error=health["last_error"] or "?", hint=hint)

    def _condition(self, key: str, active: bool, kind: str, severity: Severity, now: float,
                   **params: object) -> None:
        opened = self.book.since(key)
        change = self.book.update(key, active, now)
        if change in (Change.OPENED, Change.REMINDER):
            title, _ = wording.say(kind, self.language, host=self.host, **params)
            self.titles[key] = title
            self._send(kind, key, severity, now, **params)
        elif change is Change.RESOLVED:
            self._send("resolved", key, Severity.RESOLVED, now, title=self.titles.pop(key, key),
                       minutes=_minutes(now - (opened or now)))

    def _send(self, kind: str, key: str, severity: Severity, now: float, **params: object) -> None:
        params.setdefault("host", self.host)
        self.outbox.put(wording.alert(kind, key, severity, self.language, now, **params))

    # --- status -------------------------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, object]:
        workers = {}
        for w in self.watches.values():
            v = w.verdict
            workers[w.key] = {"health": v.health.value if v else "unknown", "reason": v.reason if v else "",
                              "phase": v.phase if v else None, "job": v.job if v else None,
                              "quiet_s": round(v.quiet_s, 1) if v else None,
                              "limit_s": v.limit_s if v else None,
                              "restarts": len(w.restarts), "restarts_total": w.restarts_total,
                              "restart_at": w.restart_at, "gave_up": w.looped
                              or bool(v and v.health is Health.GAVE_UP)}
        return {"host": self.host, "written_at": now, "manager": self.manager.kind,
                "share_ok": self.share_down_since is None, "share_error": self.share_error,
                "workers": workers, "incidents": sorted(self.book.open), "channels": self.outbox.health(),
                "outbox_pending": self.outbox.pending(), "gpus": self.gpu_readings,
                "share": status.figures(self.survey, self.host, now, self.finished, self.render_s_sum,
                                        self.render_s_count)}


    def summary(self) -> str:
        counts: dict[str, int] = {}
        for w in self.watches.values():
            health = w.verdict.health.value if w.verdict else "unknown"
            counts[health] = counts.get(health, 0) + 1
        workers = ", ".join(f"{n} {h}" for h, n in sorted(counts.items())) or "no workers"
        share = "ok" if self.share_down_since is None else "DOWN"
        return f"{workers}; {len(self.book.open)} open incidents; share {share}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}"
