"""One pass of the watchdog: survey the share, then hand it to each concern, which alerts on what changed.

The concerns: this host's workers (sentinel/workers.py: verdicts and restarts), the appliance's conditions
(sentinel/appliance.py), and the tally of finished jobs with its failed-job digest (sentinel/tally.py);
all raise through one Alarm. The pass never waits on HTTP (the outbox sends) and waits on the share at
most `share_timeout_s`; while the share hangs, only the share's own alert and the host's checks run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from daemon.core.config import Config
from daemon.sentinel.alarm import Alarm, minutes
from daemon.sentinel.alerts.alert import Severity
from daemon.sentinel.alerts.outbox import Outbox
from daemon.sentinel.appliance import Appliance
from daemon.sentinel.gpu import NvmlProbe
from daemon.sentinel.lane import Lane
from daemon.sentinel.managers.supervision import ProcessManager
from daemon.sentinel.survey import Survey, Surveyor
from daemon.sentinel.tally import Tally
from daemon.sentinel.workers import Workers

log = logging.getLogger(__name__)


class Patrol:
    def __init__(self, config: Config, manager: ProcessManager, outbox: Outbox, lane: Lane, host: str,
                 language: str, gpu: NvmlProbe | None = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.manager, self.outbox, self.lane = config.watchdog, manager, outbox, lane
        self.root, self.host, self.clock = config.root, host, clock
        self.surveyor = Surveyor(config.root)
        self.alarm = Alarm(outbox, host, language, config.alerts.renotify_min * 60)
        self.workers = Workers(config.watchdog, manager, self.alarm, lane, host)
        self.appliance = Appliance(config.watchdog, self.alarm, outbox, gpu, started_at=clock())
        self.tally = Tally(config.watchdog.failed_window_s, self.alarm)
        self.share_down_since: float | None = None
        self.share_error = ""
        self._survey: Future[Survey] | None = None
        self._survey_waited = False

    def step(self) -> Survey | None:
        """One pass; returns the survey, or None when the share did not answer in time."""
        now = self.clock()
        survey = self._take_survey(now)
        self.manager.poll()
        if survey is not None:
            # judging workers needs fresh heartbeats: while the share hangs, they hang on it too and a
            # restart would not help, so only the share alert runs
            self.workers.judge(survey, now)
            self.tally.count(survey, now)
            self.appliance.check_share(survey, now)
        self.tally.flush(now)
        self.alarm.condition("share", self._share_down(now), "share_unreachable", Severity.WARNING, now,
                             root=str(self.root), minutes=minutes(now - (self.share_down_since or now)),
                             detail=self.share_error)
        self.appliance.check_host(now)
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

    # --- status -------------------------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, object]:
        return {"host": self.host, "written_at": now, "manager": self.manager.kind,
                "share_ok": self.share_down_since is None, "share_error": self.share_error,
                "workers": self.workers.snapshot(), "incidents": sorted(self.alarm.book.open),
                "channels": self.outbox.health(), "outbox_pending": self.outbox.pending(),
                "gpus": self.appliance.gpu_readings, "share": self.tally.figures(now)}

    def summary(self) -> str:
        share = "ok" if self.share_down_since is None else "DOWN"
        return f"{self.workers.summary()}; {len(self.alarm.book.open)} open incidents; share {share}"
