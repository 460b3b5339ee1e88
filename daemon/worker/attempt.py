"""One attempt at one job: the folder it is in now, its spec, its number, its log and when it began.

The job folder moves while the attempt lasts (processing/ → done/, failed/ or staging/); `move()`
renames it through state.move and points the job's log at the new place, so that no caller keeps the
folder and the log in step by hand.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core import report, state
from daemon.core.history import JobLog
from daemon.core.job import Job, JobSpec
from daemon.core.state import JobState


@dataclass
class Attempt:
    job: Job  # where the folder is now: follows every move()
    spec: JobSpec
    number: int  # 1 for the first claim; recovery after a crash counts up
    log: JobLog
    started: float = field(default_factory=time.time)

    @classmethod
    def of(cls, job: Job, logger: logging.Logger) -> Attempt:
        """The attempt a claimed job is on now (its spec must be readable: see quarantine.py)."""
        return cls(job, job.spec(), job.attempt(), JobLog(job.id, job.path, logger))

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def path(self) -> Path:
        return self.job.path

    @property
    def inputs(self) -> dict[str, str]:
        return {"audio": self.spec.audio, "video": self.spec.video}

    def timings(self) -> dict[str, float]:
        return {"accepted_at": self.spec.accepted_at, "claimed_at": self.started}

    def move(self, to: JobState, why: str) -> Job:
        """Rename the job's folder into `to` and follow it; JobGone if a takeover moved it first."""
        self.job = state.move(self.job, to, why)
        self.log.where = self.job.path
        return self.job

    def write_failure(self, code: str, params: dict[str, Any], language: str,
                      timings: dict[str, float] | None = None, trace: str | None = None) -> None:
        """error.txt and report.json, written before the move to failed/ (never there without its reason)."""
        report.write_failure(self.path, job_id=self.id, code=code, params=params, language=language,
                             inputs=self.inputs, attempts=self.number, batch=self.spec.batch, traceback=trace,
                             timings=timings)

    def write_success(self, stats: dict[str, Any]) -> None:
        timings = {**self.timings(), "render_s": time.time() - self.started}
        report.write_success(self.path, job_id=self.id, output=self.spec.output, attempts=self.number,
                             timings=timings, inputs=self.inputs, batch=self.spec.batch, stats=stats)
