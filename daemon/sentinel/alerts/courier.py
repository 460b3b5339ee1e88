"""Delivery to one chat robot: pending alerts, a token bucket, back-off, digests, and channel health.

`pump(now)` makes at most one HTTP attempt and is what tests drive with a fake clock; `start()` runs
it on the courier's own thread, so a hanging robot delays neither the watchdog nor the other robots.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from daemon.sentinel.alerts.alert import Alert, cut_utf8
from daemon.sentinel.alerts.bucket import TokenBucket
from daemon.sentinel.alerts.robots import Delivery, Outcome, Robot

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 600.0
BROKEN_PROBE_S = 3600.0  # a misconfigured robot is tried again hourly (and at every restart), not forever
DIGEST_LINE_BYTES = 400
DIGEST_TITLES = {"en": "{count} alerts (digest) · {worst}", "zh": "{count} 条告警（汇总）· {worst}"}


class Keeper(Protocol):
    """Where pending alerts survive a restart (outbox files); calls must not block."""

    def saved(self, channel: str, alert: Alert) -> None: ...
    def delivered(self, channel: str, alert: Alert) -> None: ...
    def rejected(self, channel: str, alert: Alert, why: str) -> None: ...


@dataclass
class Health:
    state: str = "ok"  # ok | retrying | broken
    sent: int = 0
    failed: int = 0
    rejected: int = 0
    last_error: str = ""
    last_code: str = ""
    clock_skew: bool = False
    hint: str = ""  # the vendor code's advice for the operator (robots.Outcome.hint)
    last_sent_at: float | None = None
    failures: dict[str, int] = field(default_factory=dict)  # code → count, for metrics


class Courier:
    def __init__(self, robot: Robot, per_minute: float, keeper: Keeper,
                 clock: Callable[[], float] = time.time,
                 capacity: float = 3.0, limit_bytes: int = 4000, language: str = "en") -> None:
        self.robot, self.keeper, self.clock = robot, keeper, clock
        self.name = robot.name
        self.digest_title = DIGEST_TITLES.get(language, DIGEST_TITLES["en"])
        self.bucket = TokenBucket(per_minute, capacity, clock())
        self.limit_bytes = min(limit_bytes, robot.limit_bytes)
        self.health = Health()
        self.pending: list[Alert] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._not_before = 0.0  # back-off or broken-probe time
        self._failures = 0

    def put(self, alert: Alert, persist: bool = True) -> None:
        with self._lock:
            self.pending.append(alert)
        if persist:
            self.keeper.saved(self.name, alert)
        self._wake.set()

    def pump(self, now: float) -> Outcome | None:
        """One delivery attempt if something is pending and both back-off and the bucket allow it."""
        with self._lock:
            if not self.pending or now < self._not_before or not self.bucket.take(now):
                return None
            batch = self._choose(now)
        title, text = self._compose(batch)
        outcome = self.robot.send(title, text)
        self._settle(batch, outcome, now)
        return outcome

    def due_in(self, now: float) -> float:
        """Seconds until pump() could do something (for the thread's wait)."""
        with self._lock:
            if not self.pending:
                return 3600.0
        return max(self._not_before - now, self.bucket.wait_s(now), 0.0)

    def _choose(self, now: float) -> list[Alert]:
        # one alert alone while the budget lasts; once more are waiting than tokens left, a digest
        if len(self.pending) == 1 or len(self.pending) <= self.bucket.available(now):
            return self.pending[:1]
        batch: list[Alert] = []
        used = 200
        for alert in self.pending:
            size = len(cut_utf8(alert.line(), DIGEST_LINE_BYTES).encode()) + 3
            if batch and used + size > self.limit_bytes:
                break
            batch.append(alert)
            used += size
        return batch

    def _compose(self, batch: list[Alert]) -> tuple[str, str]:
        # alert texts are plain and carry producer-chosen names: escaped for the vendor's format here,
        # where our own markup (the digest's list) is added after
        esc = self.robot.escape
        if len(batch) == 1:
            return esc(batch[0].title), esc(batch[0].text)
        lines = [f"- {esc(cut_utf8(a.line(), DIGEST_LINE_BYTES))}" for a in batch]
        worst = min(batch, key=lambda a: ["critical", "warning", "resolved"].index(a.severity.value))
        return esc(self.digest_title.format(count=len(batch), worst=worst.title)), "\n".join(lines)

    def _settle(self, batch: list[Alert], outcome: Outcome, now: float) -> None:
        h = self.health
        if outcome.delivery is Delivery.SENT:
            self._forget(batch)
            for alert in batch:
                self.keeper.delivered(self.name, alert)
            h.state, h.sent, h.last_sent_at = "ok", h.sent + len(batch), now
            self._failures, self._not_before = 0, 0.0
            return
        h.failed += 1
        h.failures[outcome.code] = h.failures.get(outcome.code, 0) + 1
        h.last_code, h.last_error = outcome.code, outcome.detail
        if outcome.delivery is Delivery.TRANSIENT:
            self._failures += 1
            wait = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self._failures - 1))
            self._not_before = now + max(wait, outcome.retry_after_s or 0.0)
            h.state = "retrying"
            log.warning("alert channel %s: %s (%s); %d pending, next try in %.0f s", self.name,
                        outcome.code, outcome.detail, len(self.pending), self._not_before - now)
        elif outcome.delivery is Delivery.REJECTED:
            self._forget(batch)
            h.rejected += len(batch)
            for alert in batch:
                self.keeper.rejected(self.name, alert, f"{outcome.code} {outcome.detail}")
            log.error("alert channel %s refused a message for good (%s %s): %s", self.name, outcome.code,
                      outcome.detail, "; ".join(a.line() for a in batch))
        else:
            self._not_before = now + BROKEN_PROBE_S
            h.state, h.clock_skew, h.hint = "broken", outcome.clock_skew, outcome.hint
            hint = outcome.hint or ("this host's clock is off by a lot: fix NTP/chrony" if outcome.clock_skew
                                    else "check the webhook/secret/keyword in the config")
            log.error("alert channel %s is misconfigured (%s %s): %s; %d alerts kept in the outbox",
                      self.name, outcome.code, outcome.detail, hint, len(self.pending))

    def _forget(self, batch: list[Alert]) -> None:
        ids = {a.id for a in batch}
        with self._lock:
            self.pending = [a for a in self.pending if a.id not in ids]

    def snapshot(self) -> dict[str, Any]:
        h = self.health
        with self._lock:
            pending = len(self.pending)
        return {"ok": h.state == "ok", "state": h.state, "sent": h.sent, "failed": h.failed,
                "rejected": h.rejected, "pending": pending,
                "last_error": f"{h.last_code} {h.last_error}".strip(),
                "clock_skew": h.clock_skew, "hint": h.hint, "last_sent_at": h.last_sent_at,
                "failures": dict(h.failures)}

    # --- the courier's own thread ------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"alerts-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.pump(self.clock())
            self._wake.wait(min(self.due_in(self.clock()), 30.0))
            self._wake.clear()
