"""Renews a claimed job's lease from a thread of its own while a long chunk runs.

A SIGSTOPped worker stops renewing with it, so its lease expires and another worker may take over.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from daemon.core import lease
from daemon.core.errors import ShareUnreachable

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, job_dir: Path, every_s: float) -> None:
        self._stop = threading.Event()
        self._dir = job_dir
        self._thread = threading.Thread(target=self._run, args=(every_s,), name="lease", daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        warned = False
        while not self._stop.wait(every_s):
            try:
                if not lease.touch(self._dir):
                    return
            except (OSError, ShareUnreachable) as exc:  # the share is away: keep trying, it may come back
                if not warned:
                    log.warning("%s: cannot renew the lease: %s", self._dir.name.split("@", 1)[0], exc)
                warned = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
