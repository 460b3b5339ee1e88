"""Pure health verdicts for one worker: heartbeat + log mtime + the process manager's view + time → Verdict.

No I/O and no clock: everything is passed in, so every rule below is a unit test away.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from daemon.core.config import WatchdogConfig
from daemon.core.heartbeat import Heartbeat
from daemon.sentinel.managers.supervision import ProgramState, ProgramView

# A quiet working worker that still uses CPU is slow, not stuck (sentinel/cpu.py) — up to this many
# times its limit, after which it is restarted whatever it is doing (a loop that never reports progress
# is a stall too). BUSY_MIN_SHARE: the share of one CPU over the recent window (half the limit) that
# counts as working; a SIGSTOPped, deadlocked or share-blocked worker uses none.
BUSY_LIMIT_FACTOR = 3.0
BUSY_MIN_SHARE = 0.02


class Health(Enum):
    HEALTHY = "healthy"
    STARTING = "starting"  # a (re)started process has not reported yet, within the loading limit
    STALLED = "stalled"  # no sign of life for longer than its phase allows → restart
    DOWN = "down"  # not running and the process manager is dealing with it (backoff, stopped)
    GAVE_UP = "gave_up"  # the process manager stopped trying (FATAL, start-limit-hit): a human must act
    UNKNOWN = "unknown"  # nothing to judge by (no heartbeat and no process manager view)


@dataclass(frozen=True)
class Limits:
    loading: float
    idle: float
    chunk: float
    finalizing: float
    stopping: float

    @classmethod
    def from_config(cls, cfg: WatchdogConfig) -> Limits:
        return cls(cfg.loading_limit_s, cfg.idle_limit_s, cfg.chunk_limit_s, cfg.finalizing_limit_s,
                   cfg.stopping_limit_s)

    def for_phase(self, phase: str) -> float:
        return {"loading": self.loading, "idle": self.idle, "working": self.chunk,
                "finalizing": self.finalizing, "stopping": self.stopping}.get(phase, self.chunk)


@dataclass(frozen=True)
class Verdict:
    health: Health
    reason: str  # a short code: "working_stalled", "no_heartbeat_after_start", "FATAL", ...
    phase: str | None = None
    job: str | None = None
    quiet_s: float = 0.0  # seconds since the last sign of life
    limit_s: float = 0.0
    grace: bool = False  # judged with the start-up grace of a process we restarted (see _restart_grace)


def judge(beat: Heartbeat | None, log_mtime: float | None, program: ProgramView | None, limits: Limits,
          now: float, restart_at: float | None = None, cpu_share: float | None = None) -> Verdict:
    """The verdict on one worker at `now`; `restart_at` is when the watchdog last asked for a restart,
    `cpu_share` the share of one CPU the worker used lately (None: unknown)."""
    if program is not None:
        if program.gave_up:
            return Verdict(Health.GAVE_UP, program.detail or program.state.value)
        if program.state in (ProgramState.BACKOFF, ProgramState.STOPPED, ProgramState.EXITED,
                             ProgramState.STOPPING):
            return Verdict(Health.DOWN, program.state.value)
    started = _start_of_current_process(beat, program, restart_at)
    if started is not None:
        # the running process has not written a heartbeat yet: it gets the loading limit from its start
        quiet = now - started
        if quiet > limits.loading:
            return Verdict(Health.STALLED, "no_heartbeat_after_start", "loading", None, quiet, limits.loading)
        return Verdict(Health.STARTING, "starting", "loading", None, quiet, limits.loading)
    if beat is None:
        return Verdict(Health.UNKNOWN, "no_heartbeat")
    limit = limits.for_phase(beat.phase)
    grace = _restart_grace(beat, restart_at)
    if beat.phase == "working":
        # written_at may move without progress (lease refresh); only progress and the job log count
        last = max(beat.progress_at, log_mtime or 0.0)
        if grace:
            # restarted by us mid-job, it resumes (probe, speech, faces) before its first chunk: the chunk
            # limit counts from the end of its start-up grace, or a busy machine is restarted in a loop
            last = max(last, (restart_at or 0.0) + limits.loading)
    elif beat.phase == "idle":
        last = beat.written_at  # an idle worker re-writes its heartbeat every poll
    else:
        last = max(beat.progress_at, beat.written_at, log_mtime or 0.0)
    quiet = max(0.0, now - last)
    if quiet > limit and beat.phase == "working" and cpu_share is not None and cpu_share >= BUSY_MIN_SHARE \
            and quiet <= limit * BUSY_LIMIT_FACTOR:
        return Verdict(Health.HEALTHY, "working_busy", beat.phase, beat.job, quiet, limit, grace)
    if quiet > limit:
        return Verdict(Health.STALLED, f"{beat.phase}_stalled", beat.phase, beat.job, quiet, limit, grace)
    return Verdict(Health.HEALTHY, beat.phase, beat.phase, beat.job, quiet, limit, grace)


def _restart_grace(beat: Heartbeat, restart_at: float | None) -> bool:
    """True while the process started by our last restart has not rendered yet (its start-up grace).

    It ends with the first rendered batch (`step` "render"), or when the worker goes idle or finishes."""
    if restart_at is None or beat.written_at < restart_at:
        return False  # not restarted by us, or the heartbeat is still the old process's
    return beat.phase in ("loading", "working") and beat.progress.phase != "render"


def _start_of_current_process(beat: Heartbeat | None, program: ProgramView | None,
                              restart_at: float | None) -> float | None:
    """When the process we should judge started, if its heartbeat is not its own (yet); else None."""
    newest_write = beat.written_at if beat is not None else None
    candidates = []
    if program is not None and program.started_at is not None and program.state in (
            ProgramState.RUNNING, ProgramState.STARTING):
        same_pid = beat is not None and program.pid is not None and beat.pid == program.pid
        if not same_pid and (newest_write is None or newest_write < program.started_at):
            candidates.append(program.started_at)
    if restart_at is not None and (newest_write is None or newest_write < restart_at):
        candidates.append(restart_at)
    if beat is None and program is not None and program.started_at is not None:
        candidates.append(program.started_at)
    return max(candidates) if candidates else None
