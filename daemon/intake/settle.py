"""Deciding that a drop has stopped changing, on the daemon's monotonic clock.

A drop is settled when its signature (size, mtime, ctime of the ticket and every file it names) has been
identical over at least `scans` observations spanning at least `settle_s`. Judging "mtime is old" would
be wrong: copy tools keep old mtimes and host clocks differ.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass


@dataclass
class _Seen:
    signature: Hashable
    since: float  # when this exact signature was first observed
    count: int
    first_seen: float  # when the drop was first observed at all (orphan timeout)


class Settler:
    def __init__(self, settle_s: float, scans: int, clock: Callable[[], float]) -> None:
        self.settle_s = settle_s
        self.scans = scans
        self.clock = clock
        self._seen: dict[str, _Seen] = {}

    def observe(self, key: str, signature: Hashable) -> bool:
        """Record one observation; True once the drop is settled."""
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(signature, now, 1, now)
            return False
        if seen.signature != signature:
            seen.signature, seen.since, seen.count = signature, now, 1
            return False
        seen.count += 1
        return seen.count >= self.scans and now - seen.since >= self.settle_s

    def waiting_for(self, key: str) -> float:
        """Seconds since this drop was first seen (0 if unknown)."""
        seen = self._seen.get(key)
        return 0.0 if seen is None else self.clock() - seen.first_seen

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Drop state for drops that vanished from the inbox (accepted, or removed by the producer)."""
        live = set(keys)
        for key in list(self._seen):
            if key not in live:
                del self._seen[key]
