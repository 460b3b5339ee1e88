"""Deciding that a drop has stopped changing, on the daemon's monotonic clock.

A drop is settled when its signature (size, mtime, ctime of the ticket and every file it names) has been
identical over at least `scans` observations spanning at least `settle_s`. Judging "mtime is old" would
be wrong: copy tools keep old mtimes and host clocks differ. A file some process still holds open for
writing restarts the window (`restart`): it is not settled, however still it looks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class _Seen:
    parts: Mapping[str, Hashable]
    since: float  # when this exact signature was first observed (or the window last restarted)
    count: int
    first_seen: float  # when the drop was first observed at all
    changed: tuple[str, ...] = field(default=())  # names that differed at the last observation


class Settler:
    def __init__(self, settle_s: float, scans: int, clock: Callable[[], float]) -> None:
        self.settle_s = settle_s
        self.scans = scans
        self.clock = clock
        self._seen: dict[str, _Seen] = {}

    def observe(self, key: str, parts: Mapping[str, Hashable]) -> bool:
        """Record one observation of {name: signature}; True once the drop is settled."""
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = _Seen(dict(parts), now, 1, now, tuple(parts))
            return False
        if seen.parts != parts:
            seen.changed = tuple(n for n in {**seen.parts, **parts} if seen.parts.get(n) != parts.get(n))
            seen.parts, seen.since, seen.count = dict(parts), now, 1
            return False
        seen.changed = ()
        seen.count += 1
        return seen.count >= self.scans and now - seen.since >= self.settle_s

    def restart(self, key: str) -> None:
        """Not settled after all (a writer still has a file open): the window starts again now."""
        seen = self._seen.get(key)
        if seen is not None:
            seen.since, seen.count = self.clock(), 1

    def changed(self, key: str) -> tuple[str, ...]:
        """Names whose signature changed at the last observation (all of them at the first)."""
        seen = self._seen.get(key)
        return () if seen is None else seen.changed

    def unchanged_for(self, key: str) -> float:
        """Seconds since the drop last changed (or its window restarted); 0 if unknown."""
        seen = self._seen.get(key)
        return 0.0 if seen is None else self.clock() - seen.since

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
