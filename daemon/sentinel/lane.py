"""One background thread for share I/O, so a hung NFS/SMB mount never freezes the supervision loop.

Callers either wait for a result with a timeout or just hand work over. While a call hangs, later
work queues behind it and `stuck_since` tells the role how long the share has not answered.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Lane:
    def __init__(self, name: str = "share-io") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._started_at: float | None = None  # monotonic start of the call in progress
        # a daemon thread: if the share hangs for good, the process can still exit
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return future

    def post(self, fn: Callable[[], None], what: str) -> None:
        """Hand over work nobody waits for; an OSError is logged (the share may be away), not lost."""
        self.submit(guarded(fn, what))

    def call(self, fn: Callable[[], T], timeout_s: float) -> T:
        """Run `fn` on the lane; raises TimeoutError if it has not finished within `timeout_s`."""
        return self.submit(fn).result(timeout=timeout_s)

    def stuck_for(self) -> float:
        """Seconds the call in progress has been running (0 when idle)."""
        started = self._started_at
        return 0.0 if started is None else time.monotonic() - started

    def close(self, timeout_s: float = 2.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            self._started_at = time.monotonic()
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)
            finally:
                self._started_at = None


def guarded(fn: Callable[[], None], what: str) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except OSError as exc:
            log.warning("%s failed: %s", what, exc)
    return run
