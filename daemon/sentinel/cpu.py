"""CPU seconds a worker's process tree has used: evidence that a quiet worker is still working.

A worker that reports no progress for longer than its limit is either stuck (SIGSTOPped, deadlocked,
blocked on a dead share: its tree uses no CPU) or slow because the machine is overloaded (it and its
ffmpeg children use what CPU they get). Only the first is a stall; restarting the second throws its
work away and, in a loop, fails a good job. The tree counts (a worker waiting on its decoder uses no
CPU itself), and children it already reaped count through its children_* times; a worker that is
itself stopped (SIGSTOP, state T) is never busy, whatever its children still finish.
"""

from __future__ import annotations

import psutil

START_TOLERANCE_S = 0.05  # create_time comes from clock ticks since boot
NOT_RUNNING = frozenset({psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD})


def tree_cpu_s(pid: int, pid_start: float) -> float | None:
    """User + system CPU seconds of `pid` and its descendants; None if it is gone, not that process,
    or stopped (a stopped worker does no work, so it has no CPU to show)."""
    try:
        proc = psutil.Process(pid)
        if pid_start and abs(proc.create_time() - pid_start) > START_TOLERANCE_S:
            return None  # the pid now belongs to another process
        if proc.status() in NOT_RUNNING:
            return None
        own = proc.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        for child in proc.children(recursive=True):
            try:
                times = child.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue  # ended while we looked: its time moves to its parent's children_* fields
        return float(total)
    except psutil.Error:
        return None


class CpuMeter:
    """The share of one CPU each worker process used over the last `window` seconds (None: no sample
    that old yet, or the process is gone). A recent window, not "since the last progress": a worker
    stopped a moment after a busy second must not look busy for the rest of its stall."""

    def __init__(self) -> None:
        self._samples: dict[str, list[tuple[float, int, float]]] = {}  # key → [(t, pid, cpu seconds)]

    def recent_share(self, key: str, pid: int, pid_start: float, now: float, window: float) -> float | None:
        used = tree_cpu_s(pid, pid_start)
        if used is None:
            self._samples.pop(key, None)
            return None
        samples = [s for s in self._samples.get(key, []) if s[1] == pid]
        old = [i for i, s in enumerate(samples) if now - s[0] >= window]
        samples = samples[old[-1]:] if old else samples  # from the newest sample `window` old on
        samples.append((now, pid, used))
        self._samples[key] = samples
        if not old:
            return None
        t, _pid, cpu = samples[0]
        return max(0.0, used - cpu) / max(now - t, 1e-6)
