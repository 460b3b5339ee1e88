"""A generic JSON webhook: {title, text, host, sent_at} to any receiver that answers 2xx."""

from __future__ import annotations

import time

from daemon.core.config import AlertsConfig
from daemon.sentinel.alerts.alert import cut_utf8
from daemon.sentinel.alerts.robots.poster import Clock, Delivery, Outcome, Poster, Response, Robot, Vendor


class JsonWebhook(Poster):
    name = "webhook"
    limit_bytes = 60000

    def __init__(self, url: str, host: str, timeout_s: float = 10.0, clock: Clock = time.time) -> None:
        super().__init__(url, [], timeout_s, clock)
        self.host = host

    def send(self, title: str, text: str) -> Outcome:
        body = {"title": title, "text": cut_utf8(text, self.limit_bytes), "host": self.host,
                "sent_at": self.clock()}
        return self.post(self.url, body)

    def without_code(self, resp: Response) -> Outcome:
        return Outcome(Delivery.SENT)  # a plain receiver answers 2xx with any body


def _build(alerts: AlertsConfig, host: str, timeout_s: float, clock: Clock) -> tuple[Robot, int] | None:
    w = alerts.webhook
    return (JsonWebhook(w.url, host, timeout_s, clock), w.per_minute) if w.url else None


VENDOR = Vendor("webhook", _build)
