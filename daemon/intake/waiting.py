"""What each drop in inbox/ is waiting for, since when, and when it will be rejected if nothing changes.

Written into intake.json at every scan (the status page, status.json and `lipsyncd status` read it
there), so a producer who re-copies never stares at an empty failed/ wondering what happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# why a named file holds a drop back, in the words the page shows
REASONS = ("missing", "empty", "copying", "incomplete", "open")


@dataclass
class Wait:
    drop: str  # how the producer knows it: ticket name, or folder/ticket
    since: float  # wall clock: first seen
    changed_at: float  # wall clock: last change (the timers count from here)
    files: list[dict[str, str]] = field(default_factory=list)  # {"name", "why", "detail"}
    deadline: float | None = None  # wall clock: rejected then if nothing changes
    deadline_code: str = ""  # what it will be rejected as

    def add(self, name: str, why: str, detail: str = "") -> None:
        self.files.append({"name": name, "why": why, "detail": detail})

    def to_json(self) -> dict[str, Any]:
        return {"drop": self.drop, "since": round(self.since, 3), "changed_at": round(self.changed_at, 3),
                "waits_for": self.files, "deadline": round(self.deadline, 3) if self.deadline else None,
                "deadline_code": self.deadline_code}


class Board:
    """The waits found by one scan, in the order the scan met them."""

    def __init__(self) -> None:
        self.waits: dict[str, Wait] = {}

    def wait(self, key: str, drop: str, since: float, changed_at: float) -> Wait:
        if key not in self.waits:
            self.waits[key] = Wait(drop, since, changed_at)
        return self.waits[key]

    def to_json(self) -> list[dict[str, Any]]:
        return [w.to_json() for w in self.waits.values() if w.files]
