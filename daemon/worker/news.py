"""What a worker tells others while it works: its heartbeat file, and each attempt's progress.json.

Both are news, not state: a write that fails is logged and never fails a job.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from daemon.core import heartbeat, lease, progress
from daemon.core.errors import JobLost
from daemon.core.notify import Notifier
from daemon.core.progress import Progress
from daemon.worker.attempt import Attempt

log = logging.getLogger(__name__)


class Heartbeats:
    """This worker's heartbeat, written on every phase change and with every piece of progress."""

    def __init__(self, internal: Path, ident: lease.Identity, gpu: str = "") -> None:
        self.internal = internal
        self.ident = ident
        self.gpu = gpu  # the --gpu this worker was started with, shown on the status page

    def send(self, phase: str, job: str | None = None, p: Progress = progress.NO_PROGRESS) -> None:
        beat = heartbeat.Heartbeat(host=self.ident.host, worker=self.ident.worker, pid=self.ident.pid,
                                   pid_start=self.ident.pid_start, phase=phase, job=job, progress=p,
                                   extra={"gpu": self.gpu} if self.gpu else {})
        try:
            heartbeat.write(self.internal, beat)
        except OSError as exc:
            log.warning("could not write heartbeat: %s", exc)


class AttemptNews:
    """The renderer's progress callback for one attempt: renews the lease, writes progress.json and beats.

    News within a chunk is paced (progress.Pacer); a batch's news carries the last rate (fps, ETA) on."""

    def __init__(self, attempt: Attempt, beats: Heartbeats, notifier: Notifier) -> None:
        self._attempt = attempt
        self._beats = beats
        self._notifier = notifier
        self._pacer = progress.Pacer()
        self._rate: Progress | None = None  # the last news with a rate

    def __call__(self, p: Progress) -> None:
        job_id, path = self._attempt.id, self._attempt.path
        if not self._pacer.due((p.phase, p.chunk)):
            return  # a batch within a chunk, less than a second after the last news
        if p.fps:
            self._rate = p
        elif self._rate is not None and p.phase == "render":
            p = dataclasses.replace(p, fps=self._rate.fps, eta_s=self._rate.eta_s)
        if not lease.touch(path):
            raise JobLost(f"{job_id}: our lease is gone (taken over by another worker)")
        try:
            progress.write(path, progress.record(job_id, self._attempt.number, p))
        except OSError as exc:  # news for people, not state: never fail a job over it
            log.warning("%s: could not write progress.json: %s", job_id, exc)
        # muxing and checking the result is no chunk: it has the finalizing limit, not the chunk limit
        self._beats.send("finalizing" if p.phase == "finalize" else "working", job_id, p)
        self._notifier.alive(f"{job_id}: chunk {p.chunk}/{p.chunks}")
