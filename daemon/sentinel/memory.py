"""How much memory a worker on this host holds: its resident set plus its children's (the ffmpeg decoders
and encoder), read with psutil. Only for a pid that still is the worker its heartbeat names."""

from __future__ import annotations

import psutil

from daemon.core import lease


def resident_bytes(pid: int, pid_start: float) -> int | None:
    """RSS of the process and all its descendants, or None if it is gone or is another process now."""
    if not pid or not pid_start or not lease.alive(pid, pid_start):  # a reused pid is not our worker
        return None
    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # a child that ended while we counted, or one we may not read
        return int(total)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
