"""Killing a child of ours together with everything it started, and reaping them, with psutil.

`lipsyncd up` kills a role only when it must (a restart request for a stalled, maybe SIGSTOPped worker,
a second Ctrl-C): the worker's ffmpeg children would otherwise linger until their pipes close. The
descendants are listed *before* the kill, while they are still ours to find.
"""

from __future__ import annotations

import subprocess

import psutil

REAP_S = 10.0


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
    # they were re-parented when `proc` died: wait_procs polls until they are gone (reaped by init/subreaper)
    _gone, alive = psutil.wait_procs(descendants, timeout=timeout_s)
    return [p.pid for p in alive]
