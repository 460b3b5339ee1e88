"""Killing a child of ours together with everything it started, and reaping them, with psutil.

`lipsyncd up` kills a role only when it must (a restart request for a stalled, maybe SIGSTOPped worker,
a second Ctrl-C): the worker's ffmpeg children would otherwise linger until their pipes close. The
descendants are listed *before* the kill, while they are still ours to find.
"""

from __future__ import annotations

import subprocess
import time

import psutil

REAP_S = 2.0  # they are SIGKILLed: gone at once unless the kernel is busy; never worth delaying a restart


def kill_tree(proc: subprocess.Popen[bytes], timeout_s: float = REAP_S) -> list[int]:
    """SIGKILL `proc` and its descendants; wait for `proc` (our child) and for the others to vanish.
    Returns the pids of descendants still present after `timeout_s` (none, normally)."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    proc.kill()
    for other in descendants:
        try:
            other.kill()
        except psutil.NoSuchProcess:
            continue
    proc.wait()
    # re-parented when `proc` died, they are reaped by init (or a subreaper), not by us: a zombie counts as
    # gone, since it holds no memory, files or pipes any more
    deadline = time.monotonic() + timeout_s
    alive = descendants
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(0.02)
    return [p.pid for p in alive]


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
