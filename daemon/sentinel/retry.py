"""A restart the process manager refused: when to ask again, and when a human must hear of it.

A refused restart is not a restart: it earns no start-up grace and does not count towards
`max_restarts`. The watchdog asks again after `restart_retry_s`, doubling up to `restart_retry_max_s`,
and after `restart_failures_alert` refusals in a row it escalates with the manager's own words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RestartRetry:
    """Refusals of one worker's restart, in a row; reset by the first restart the manager accepts."""

    first_s: float
    max_s: float
    alert_after: int
    failures: int = 0
    retry_at: float | None = None
    error: str = ""

    def due(self, now: float) -> bool:
        """May the watchdog ask for a restart now (no refusal, or its back-off has passed)?"""
        return self.retry_at is None or now >= self.retry_at

    def refused(self, now: float, error: str) -> float:
        """Record a refusal; returns the seconds until the next attempt."""
        self.failures += 1
        self.error = error or "no reason given"
        wait: float = min(self.max_s, self.first_s * 2 ** (self.failures - 1))
        self.retry_at = now + wait
        return wait

    def accepted(self) -> None:
        self.failures, self.retry_at, self.error = 0, None, ""

    @property
    def needs_human(self) -> bool:
        return self.failures >= self.alert_after
