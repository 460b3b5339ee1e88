"""What the surveys saw finish since the watchdog started: counts and render times for status and metrics,
and failed jobs gathered into one digest alert per `watchdog.failed_window_s`.
"""

from __future__ import annotations

import logging
from typing import Any

from daemon.sentinel import status
from daemon.sentinel.alarm import Alarm
from daemon.sentinel.alerts.alert import Severity, cut_utf8
from daemon.sentinel.survey import FailedJob, Survey

log = logging.getLogger(__name__)


class Tally:
    def __init__(self, window_s: float, alarm: Alarm) -> None:
        self.window_s, self.alarm = window_s, alarm
        self.survey: Survey | None = None  # the last one that answered, for status and metrics
        self.finished = {"done": 0, "failed": 0}
        self.render_s_sum, self.render_s_count = 0.0, 0
        self.failed: list[FailedJob] = []  # waiting for the digest
        self.failed_since: float | None = None

    def count(self, survey: Survey, now: float) -> None:
        self.survey = survey
        self.finished["failed"] += len(survey.new_failed)
        self.finished["done"] += len(survey.new_done)
        for job in survey.new_done:
            if job.render_s is not None:
                self.render_s_sum += job.render_s
                self.render_s_count += 1
        for failed in survey.new_failed:
            log.warning("%s: failed: %s: %s", failed.job, failed.code, failed.message)  # job id first: one grep
            self.failed.append(failed)
            self.failed_since = self.failed_since or now

    def flush(self, now: float) -> None:
        """One alert for the failures gathered, once the first of them is `window_s` old."""
        if not self.failed or self.failed_since is None or now - self.failed_since < self.window_s:
            return
        lines = "\n".join(cut_utf8(f"- {j.job}{f' ({j.batch})' if j.batch else ''}: {j.code}: {j.message}",
                                   300) for j in self.failed)
        self.alarm.send("jobs_failed", f"failed:{self.failed[0].job}", Severity.WARNING, now,
                        count=len(self.failed), lines=lines, host=self.alarm.host)
        self.failed, self.failed_since = [], None

    def figures(self, now: float) -> dict[str, Any]:
        return status.figures(self.survey, self.alarm.host, now, self.finished, self.render_s_sum,
                              self.render_s_count)
