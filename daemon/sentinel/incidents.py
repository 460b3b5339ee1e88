"""Incidents by key: open once, remind every re-notify interval while still active, resolve once.

Pure bookkeeping with the time passed in; the role feeds it conditions each pass and alerts on what
it returns, so a condition that stays true for hours yields one alert per interval, not one per pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Change(Enum):
    OPENED = "opened"
    REMINDER = "reminder"
    RESOLVED = "resolved"


@dataclass
class Incident:
    key: str
    opened_at: float
    notified_at: float
    reminders: int = 0


class IncidentBook:
    def __init__(self, renotify_s: float) -> None:
        self.renotify_s = renotify_s
        self.open: dict[str, Incident] = {}

    def update(self, key: str, active: bool, now: float) -> Change | None:
        incident = self.open.get(key)
        if not active:
            if incident is None:
                return None
            del self.open[key]
            return Change.RESOLVED
        if incident is None:
            self.open[key] = Incident(key, now, now)
            return Change.OPENED
        if self.renotify_s > 0 and now - incident.notified_at >= self.renotify_s:
            incident.notified_at = now
            incident.reminders += 1
            return Change.REMINDER
        return None

    def is_open(self, key: str) -> bool:
        return key in self.open

    def since(self, key: str) -> float | None:
        incident = self.open.get(key)
        return incident.opened_at if incident else None
