"""A token bucket per chat robot, so a burst of alerts never trips the platform's per-minute limit.

At most `capacity + per_minute` sends fit in any sliding minute, so capacity is kept small.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, per_minute: float, capacity: float = 3.0, now: float = 0.0) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, capacity)
        self.tokens = self.capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self.tokens

    def take(self, now: float) -> bool:
        """Spend one token if there is one; failed calls count too (WeCom counts them)."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self, now: float) -> float:
        """Seconds until the next token."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate
