"""How every role runs and stops: one step at a time, waiting on a stop event between steps.

First SIGTERM/SIGINT sets the stop event: the current unit of work finishes (or is put back) and the
role exits 0. A second raises StopNow in the main thread: stop at once; start-up recovery requeues.

One stop request is one signal: process managers signal the main process only (systemd
`KillMode=mixed`, supervisord `stopasgroup=false`), `lipsyncd up` starts each role in its own process
group (a terminal's Ctrl-C reaches `up` alone, which then sends one SIGTERM), and ffmpeg children sit
in process groups of their own. A role started by `up` asks the kernel for a SIGTERM when `up` dies
(`follow_parent`), so a killed `up` never leaves roles running on their own.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

PARENT_PID_ENV = "LIPSYNCD_UP_PID"  # set by `lipsyncd up` for its children
_PR_SET_PDEATHSIG = 1


class StopNow(BaseException):
    """Second signal: unwind immediately (context managers still reap ffmpeg children)."""


class Stopper:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.signals = 0
        self._linked: list[threading.Event] = []

    def link(self, other: threading.Event) -> None:
        """Also set `other` on stop, so a loop waiting on a wake-up event notices the stop at once."""
        self._linked.append(other)

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    def set(self) -> None:
        self.event.set()
        for other in self._linked:
            other.set()

    def install(self, hangup: bool = False) -> None:
        """Route SIGTERM and SIGINT (and SIGHUP: a closed terminal, for `up`) here (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if hangup:
            signal.signal(signal.SIGHUP, self._on_signal)
        follow_parent()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            log.info("%s received: finishing the current unit of work, then stopping", name)
            self.set()
            return
        log.warning("%s received again: stopping now", name)
        raise StopNow(name)


def run_until_stopped(step: Callable[[], bool], interval: float, stop: Stopper,
                      wake: threading.Event | None = None) -> None:
    """Call step() until stopped; sleep `interval` (or until woken) only when it found nothing to do."""
    if wake is not None:
        stop.link(wake)
    while not stop.is_set():
        busy = step()
        if busy or stop.is_set():
            continue
        if wake is None:
            stop.wait(interval)
            continue
        # wake early on a hint (local file events) or on stop
        if wake.wait(interval):
            wake.clear()


def follow_parent(env: dict[str, str] | None = None) -> bool:
    """Under `lipsyncd up`: have the kernel send us SIGTERM when `up` dies, even by SIGKILL.

    Roles run in their own process group there, so nothing else would tell them. Set on ourselves from
    the main thread (never in a fork hook: the worker has threads), then checked against a parent that
    died before the request took hold. True when set.
    """
    wanted = (os.environ if env is None else env).get(PARENT_PID_ENV, "")
    if not wanted.isdigit():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot follow lipsyncd up (pid %s): %s; stop this role by hand if up dies", wanted, exc)
        return False
    if os.getppid() != int(wanted):  # up died before the request was in place
        log.warning("lipsyncd up (pid %s) is gone: stopping", wanted)
        os.kill(os.getpid(), signal.SIGTERM)
    return True
