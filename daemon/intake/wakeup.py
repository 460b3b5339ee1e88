"""A latency hint only: local file events wake the intake scan early. The periodic scan stays the truth.

inotify sees nothing written by other hosts over SMB/NFS and silently drops events on overflow, so a
dead or overflowing observer costs only latency, never a job. Only events that can mean "something
arrived or changed" count: the opened / closed-without-writing events of our own reads must not wake
the scan that caused them (that loop burned a core), and a storm of writes wakes it at most once per
`gap` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# watchdog's event_type strings that can change what a scan decides
ARRIVALS = frozenset({"created", "modified", "moved", "deleted", "closed", "attrib"})


class Hint:
    """Sets `wake` on a relevant event, but never twice within `gap` seconds (a late one is deferred)."""

    def __init__(self, wake: threading.Event, gap: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.wake, self.gap, self.clock = wake, gap, clock
        self.last = float("-inf")
        self.pokes = 0  # relevant events seen, for tests and debugging
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def poke(self, event_type: str) -> None:
        if event_type not in ARRIVALS:
            return
        with self._lock:
            self.pokes += 1
            wait = self.last + self.gap - self.clock()
            if wait <= 0:
                self._fire_locked()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            self._fire_locked()

    def _fire_locked(self) -> None:
        self.last = self.clock()
        self.wake.set()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def start(inbox: Path, hint: Hint) -> Any | None:
    """Start a watchdog observer that pokes `hint` on every event; None if it cannot start."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        log.info("watchdog library not installed: relying on the periodic scan alone")
        return None

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            hint.poke(event.event_type)

    observer = Observer()
    observer.daemon = True
    try:
        observer.schedule(_Wake(), str(inbox), recursive=True)
        observer.start()
    except OSError as exc:  # inotify limits (ENOSPC/EMFILE): polling still finds everything
        log.warning("file-event hint unavailable (%s); relying on the periodic scan", exc)
        return None
    return observer
