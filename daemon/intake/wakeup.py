"""A latency hint only: local file events wake the intake scan early. The periodic scan stays the truth.

inotify sees nothing written by other hosts over SMB/NFS and silently drops events on overflow, so a
dead or overflowing observer costs only latency, never a job.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def start(inbox: Path, wake: threading.Event) -> Any | None:
    """Start a watchdog observer that sets `wake` on any event; None if it cannot start."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        log.info("watchdog library not installed: relying on the periodic scan alone")
        return None

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            wake.set()

    observer = Observer()
    observer.daemon = True
    try:
        observer.schedule(_Wake(), str(inbox), recursive=True)
        observer.start()
    except OSError as exc:  # inotify limits (ENOSPC/EMFILE): polling still finds everything
        log.warning("file-event hint unavailable (%s); relying on the periodic scan", exc)
        return None
    return observer
