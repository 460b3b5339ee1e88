"""The outbox: every alert goes to the local log first, then to each robot's courier; unsent ones persist.

Files live in `<outbox>/<channel>/<time>-<id>.json` until delivered, so a chat outage or a watchdog
restart loses nothing. All file I/O runs on the share lane; `put()` never blocks the caller.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.core import atomic, logs
from daemon.sentinel.alerts.alert import Alert
from daemon.sentinel.alerts.courier import Courier
from daemon.sentinel.lane import Lane, guarded

log = logging.getLogger(__name__)


class Store:
    """Outbox files per channel; implements courier.Keeper. Writes are handed to the lane."""

    def __init__(self, folder: Path, lane: Lane | None) -> None:
        self.folder, self.lane = folder, lane

    def _path(self, channel: str, alert: Alert) -> Path:
        return self.folder / channel / f"{int(alert.raised_at * 1000):015d}-{alert.id}.json"

    def _run(self, fn: Callable[[], None], what: str = "outbox write") -> None:
        if self.lane is None:
            guarded(fn, what)()
        else:
            self.lane.post(fn, what)

    def saved(self, channel: str, alert: Alert) -> None:
        path = self._path(channel, alert)

        def write() -> None:
            _folder(path.parent)
            atomic.write_json(path, alert.to_json(), fsync=False)
        self._run(write)

    def delivered(self, channel: str, alert: Alert) -> None:
        self._run(lambda: self._path(channel, alert).unlink(missing_ok=True))

    def rejected(self, channel: str, alert: Alert, why: str) -> None:
        src, dest = self._path(channel, alert), self.folder / "rejected" / channel

        def move() -> None:
            _folder(dest)
            try:
                os.replace(src, dest / src.name)
            except FileNotFoundError:
                pass
        self._run(move)

    def load(self, channel: str) -> list[Alert]:
        """Alerts a previous run left unsent for `channel` (called at start, off the loop)."""
        found = []
        for path in sorted((self.folder / channel).glob("*.json")):
            try:
                found.append(Alert.from_json(atomic.read_json(path)))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("outbox file %s unreadable (%s); left in place", path, exc)
        return found


class Outbox:
    def __init__(self, couriers: Sequence[Courier], store: Store, journal: Path | None,
                 lane: Lane | None, rotation: logs.Rotation | None = None) -> None:
        self.couriers, self.store, self.journal, self.lane = list(couriers), store, journal, lane
        self.rotation = rotation or logs.Rotation()

    def put(self, alert: Alert) -> None:
        """Record the alert locally (complete, never cut or digested) and queue it on every robot."""
        log.warning("ALERT %s key=%s id=%s\n%s", alert.line()[:300], alert.key, alert.id, alert.text)
        if self.journal is not None:
            line = json.dumps(alert.to_json(), ensure_ascii=False) + "\n"
            path, rotation = self.journal, self.rotation
            self._run(lambda: logs.append(path, line, rotation), f"appending to {path}")
        for courier in self.couriers:
            courier.put(alert)

    def recover(self) -> int:
        """Re-queue alerts left unsent by an earlier run; returns how many."""
        count = 0
        for courier in self.couriers:
            for alert in self.store.load(courier.name):
                courier.put(alert, persist=False)
                count += 1
        if count:
            log.info("outbox: %d unsent alerts from an earlier run queued again", count)
        return count

    def health(self) -> dict[str, Any]:
        return {c.name: c.snapshot() for c in self.couriers}

    def pending(self) -> int:
        return sum(len(c.pending) for c in self.couriers)

    def start(self) -> None:
        for courier in self.couriers:
            courier.start()

    def stop(self) -> None:
        for courier in self.couriers:
            courier.stop()

    def _run(self, fn: Callable[[], None], what: str = "outbox write") -> None:
        if self.lane is None:
            guarded(fn, what)()
        else:
            self.lane.post(fn, what)


def _folder(path: Path) -> None:
    """Create `path` and its parents up to, not including, an existing `.lipsyncd`-level folder.

    Never `parents=True` up to the root: with the share unmounted that would quietly write into the
    empty mount point on the local disk. Two levels is all the outbox needs (outbox/<channel>/).
    """
    for folder in (path.parent, path):
        if not folder.is_dir():
            folder.mkdir()

