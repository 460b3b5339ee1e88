"""The housekeeping loop the intake role runs beside its scans: the status board and retention sweeps.

It runs on its own thread so a slow snapshot (many done/ jobs on NFS) never delays accepting drops.
Share trouble (OSError) is logged and retried next round; anything else is a bug: the loop records
it and stops the role, which then exits non-zero so the process manager restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from daemon.core.config import Config
from daemon.core.errors import ShareUnreachable
from daemon.core.share import Share
from daemon.housekeeping.board import Board
from daemon.housekeeping.retention import Retention

log = logging.getLogger(__name__)


class Housekeeper:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        share = Share(config.root)
        self.interval_s = config.status.interval_s
        self.sweep_every_s = config.retention.interval_min * 60
        self.board = Board(share.root, config.general.language, config.status.interval_s, config.status.recent_jobs,
                           clock)
        self.retention = Retention(share, config.retention, clock)
        self.clock = clock
        self.next_sweep = clock()  # first sweep at start: a restart after a long stop catches up
        self.failure: BaseException | None = None
        self._complaint = ""
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        now = self.clock()
        if now >= self.next_sweep:
            self.next_sweep = now + self.sweep_every_s
            self._guarded("retention sweep", self.retention.sweep)
        self._guarded("status page", self.board.write)

    def _guarded(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (OSError, ShareUnreachable) as exc:  # a full disk or a share away: say it once, retry next round
            # compare without the file name: temp names differ on every try
            complaint = f"{what}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
            if complaint != self._complaint:
                where = getattr(exc, "filename", None)
                log.warning("could not write %s%s", complaint, f" ({where})" if where else "")
            self._complaint = complaint
            return
        if self._complaint.startswith(what):
            log.info("%s written again", what)
            self._complaint = ""

    def start(self, stop: threading.Event, on_bug: Callable[[], None]) -> None:
        def loop() -> None:
            try:
                while not stop.is_set():
                    self.step()
                    stop.wait(self.interval_s)
            except BaseException as exc:  # a bug: stop the whole role rather than serve a frozen page
                log.critical("housekeeping stopped by a bug", exc_info=True)
                self.failure = exc
                on_bug()

        self._thread = threading.Thread(target=loop, name="housekeeping", daemon=True)
        self._thread.start()

    def join(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
