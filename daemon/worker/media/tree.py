"""A child's process tree: listed from /proc and killed whole, so a sandbox never outlives its child."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, name) of a process's children, theirs and so on, read from /proc; [] once it is gone."""
    found: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += [(kid, _name(kid)) for kid in kids]
            todo += kids
    return found


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child and whatever it started.

    A boxed child is bubblewrap, whose sandbox process waits for bwrap's go-ahead before it runs the
    tool; killed in that moment, bwrap never gives it, the sandbox outlives it forever (its parent-death
    signal was not yet set) and holds our stderr pipe open. So its processes are listed first, with the
    child held still (`held`), and killed after it.
    """
    inside = held(proc.pid)
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    kill_left(inside)


def held(pid: int, wait_s: float = 1.0) -> list[tuple[int, str]]:
    """Stop `pid` (SIGSTOP) and list its descendants once it no longer runs: listed while it runs, a
    sandbox it forks a moment later is missed (2 of 40 kills during set-up on a busy box). The caller
    kills it, or terminates it and sends SIGCONT; a stopped process takes SIGKILL as it is."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return descendants(pid)
    deadline = time.monotonic() + wait_s
    while _state(pid) not in ("T", "t", "Z", "X", "") and time.monotonic() < deadline:
        time.sleep(0.001)
    return descendants(pid)


def resume(pid: int) -> None:
    """SIGCONT a process `held` stopped (gone already: nothing to do)."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _state(pid: int) -> str:
    """The one-letter state in /proc/PID/stat ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def kill_left(processes: list[tuple[int, str]]) -> None:
    """SIGKILL those of `processes` still running under their name (a pid taken since is left alone)."""
    for pid, name in processes:
        if name and _name(pid) == name:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
