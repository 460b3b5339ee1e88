"""This host's workers between passes: judge each, restart a stalled one through the process manager, alert.

Acts only on changes: a stall restarts the worker and alerts once per incident (reminders every
`alerts.renotify_min`), a recovery says so once, a give-up or a restart loop asks for a human. A restart
the manager refuses is asked for again with back-off (sentinel/retry.py) and escalated after a few.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from daemon.core import history
from daemon.core.config import WatchdogConfig
from daemon.core.heartbeat import Heartbeat
from daemon.sentinel.alarm import Alarm, minutes
from daemon.sentinel.alerts.alert import Severity
from daemon.sentinel.cpu import CpuMeter
from daemon.sentinel.incidents import Change
from daemon.sentinel.lane import Lane
from daemon.sentinel.managers import hand_start
from daemon.sentinel.managers.supervision import ProcessManager
from daemon.sentinel.retry import RestartRetry
from daemon.sentinel.survey import Survey
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


class Workers:
    def __init__(self, cfg: WatchdogConfig, manager: ProcessManager, alarm: Alarm, lane: Lane,
                 host: str) -> None:
        self.cfg, self.manager, self.alarm, self.lane, self.host = cfg, manager, alarm, lane, host
        self.limits = Limits.from_config(cfg)
        self.cpu = CpuMeter()  # a quiet worker still using CPU is slow, not stalled
        self.watches: dict[str, Watch] = {}

    def judge(self, survey: Survey, now: float) -> None:
        """Judge every worker this host knows of: by heartbeat, by the manager, or from an earlier pass."""
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
        self._alerts(watch, verdict, action, now)

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
            self.alarm.condition(f"restartfail:{watch.key}", True, "restart_failed", Severity.CRITICAL, now,
                                 worker=watch.worker, reason=verdict.reason, manager=self.manager.kind,
                                 attempts=retry.failures, error=retry.error,
                                 how=hand_start(self.manager, watch.worker), retry=f"{wait:.0f}")
        return f"Restart through {self.manager.kind} FAILED: {retry.error}. Asking again in {wait:.0f} s."

    def _refusals_over(self, watch: Watch, now: float) -> None:
        if watch.retry is not None and watch.retry.failures:
            log.info("worker %s: %s accepts restarts again", watch.key, self.manager.kind)
            watch.retry.accepted()
        if self.alarm.book.is_open(f"restartfail:{watch.key}"):
            self.alarm.condition(f"restartfail:{watch.key}", False, "restart_failed", Severity.CRITICAL, now)

    def _record_restart(self, watch: Watch, verdict: Verdict, survey: Survey, event: str) -> None:
        folder = survey.processing.get(verdict.job) if verdict.job else None
        if folder is None:
            return
        fields = {"by": "watchdog", "worker": watch.worker, "phase": verdict.phase,
                  "quiet_s": round(verdict.quiet_s, 1), "limit_s": verdict.limit_s, "manager": self.manager.kind}
        self.lane.post(lambda: history.append(folder, event, **fields), f"job {verdict.job} history")

    def _alerts(self, watch: Watch, verdict: Verdict, action: str, now: float) -> None:
        book, send = self.alarm.book, self.alarm.send
        stall_key, gone_key = f"stall:{watch.key}", f"gaveup:{watch.key}"
        healthy = verdict.health is Health.HEALTHY
        gave_up = verdict.health is Health.GAVE_UP or watch.looped
        params = {"host": self.host, "worker": watch.worker, "phase": verdict.phase or "-",
                  "job": verdict.job or "-", "quiet": f"{verdict.quiet_s:.0f}",
                  "limit": f"{verdict.limit_s:.0f}"}
        opened_at = min(t for t in (book.since(stall_key), book.since(gone_key), now) if t)
        changes = [
            (gone_key, book.update(gone_key, gave_up or (book.is_open(gone_key) and not healthy), now)),
            (stall_key, book.update(stall_key, verdict.health is Health.STALLED
                                    or (book.is_open(stall_key) and not healthy), now)),
        ]
        if changes[0][1] in (Change.OPENED, Change.REMINDER):
            why = (f"{len(watch.restarts)} restarts within {self.cfg.restart_window_min:g} min did not help"
                   if watch.looped else f"{self.manager.kind} reports {verdict.reason}")
            send("gave_up", gone_key, Severity.CRITICAL, now, why=why, how=hand_start(self.manager, watch.worker),
                 **params)
        if changes[1][1] is Change.OPENED:
            send("stalled", stall_key, Severity.WARNING, now, action=action, **params)
        elif changes[1][1] is Change.REMINDER:
            send("still_stalled", stall_key, Severity.WARNING, now, health=verdict.health.value,
                 reason=verdict.reason, minutes=minutes(now - opened_at), **params)
        if any(c is Change.RESOLVED for _k, c in changes):
            send("recovered", stall_key, Severity.RESOLVED, now, minutes=minutes(now - opened_at), **params)

    # --- status -------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        workers: dict[str, object] = {}
        for w in self.watches.values():
            v = w.verdict
            workers[w.key] = {"health": v.health.value if v else "unknown", "reason": v.reason if v else "",
                              "phase": v.phase if v else None, "job": v.job if v else None,
                              "quiet_s": round(v.quiet_s, 1) if v else None,
                              "limit_s": v.limit_s if v else None,
                              "restarts": len(w.restarts), "restarts_total": w.restarts_total,
                              "restart_at": w.restart_at, "gave_up": w.looped
                              or bool(v and v.health is Health.GAVE_UP)}
        return workers

    def summary(self) -> str:
        """"2 healthy, 1 stalled" (or "no workers"), for the notify socket's STATUS line."""
        counts: dict[str, int] = {}
        for w in self.watches.values():
            health = w.verdict.health.value if w.verdict else "unknown"
            counts[health] = counts.get(health, 0) + 1
        return ", ".join(f"{n} {h}" for h, n in sorted(counts.items())) or "no workers"
