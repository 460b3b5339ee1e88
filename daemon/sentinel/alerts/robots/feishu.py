"""Feishu/Lark's custom bot: text messages, signed by a timestamp and sign in the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from daemon.core.config import AlertsConfig
from daemon.sentinel.alerts.alert import cut_utf8
from daemon.sentinel.alerts.robots.poster import (
    Clock,
    Delivery,
    Outcome,
    Poster,
    Robot,
    Vendor,
    no_mentions,
    with_keyword,
)

FEISHU_SIGNATURE = 19021
FEISHU_HINT = ("Feishu 19021 means the signature or the timestamp is wrong: check alerts.feishu.secret "
               "against the bot's signing secret, and this host's clock (NTP/chrony); the timestamp must be "
               "within an hour of Feishu's")


def feishu_sign(secret: str, now: float) -> tuple[str, str]:
    """(timestamp s, sign): the key is "timestamp\\nsecret", the message is empty, no URL-encoding."""
    stamp = str(int(now))
    digest = hmac.new(f"{stamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return stamp, base64.b64encode(digest).decode()


class FeishuRobot(Poster):
    name = "feishu"
    limit_bytes = 16000  # the request body may be at most 20 KB

    def __init__(self, url: str, secret: str = "", keyword: str = "", timeout_s: float = 10.0,
                 clock: Clock = time.time) -> None:
        super().__init__(url, [secret], timeout_s, clock)
        self.secret, self.keyword = secret, keyword

    def send(self, title: str, text: str) -> Outcome:
        content = cut_utf8(f"{with_keyword(title, self.keyword)}\n{text}", self.limit_bytes)
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": content}}
        if self.secret:
            body["timestamp"], body["sign"] = feishu_sign(self.secret, self.clock())
        return self.post(self.url, body, code_key="code")

    def escape(self, text: str) -> str:
        return no_mentions(text)  # a text message: no markup, but <at user_id="all"> pings everyone

    def verdict(self, code: int, message: str, retry_after: float | None) -> Outcome:
        if code == FEISHU_SIGNATURE:  # "sign match fail or timestamp is not within one hour": either one
            return Outcome(Delivery.BROKEN, str(code), message, clock_skew=True, hint=FEISHU_HINT)
        return super().verdict(code, message, retry_after)


def _build(alerts: AlertsConfig, host: str, timeout_s: float, clock: Clock) -> tuple[Robot, int] | None:
    f = alerts.feishu
    return (FeishuRobot(f.webhook, f.secret, f.keyword, timeout_s, clock), f.per_minute) if f.webhook else None


VENDOR = Vendor("feishu", _build)
