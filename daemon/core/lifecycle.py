"""How every role runs and stops: one step at a time, waiting on a stop event between steps.

First SIGTERM/SIGINT sets the stop event: the current unit of work finishes (or is put back) and the
role exits 0. A second raises StopNow in the main thread: stop at once; start-up recovery requeues.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)


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

    def install(self) -> None:
        """Route SIGTERM and SIGINT here (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

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
