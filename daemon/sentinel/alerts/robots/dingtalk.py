"""DingTalk's custom robot: signed (HMAC-SHA256 in the URL), keyword or IP-allowlist mode, markdown messages."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import urllib.parse
from dataclasses import replace

from daemon.core.config import AlertsConfig
from daemon.sentinel.alerts.alert import cut_utf8
from daemon.sentinel.alerts.robots.poster import Clock, Outcome, Poster, Robot, Vendor, with_keyword

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|<>~])")
_MD_LIST = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s)", re.M)  # "- x", "+ x", "1. x" at a line start


def escape_markdown(text: str) -> str:
    """CommonMark escapes (any ASCII punctuation may be backslash-escaped) for the characters that would
    turn a name into emphasis, a link, a heading, a list or HTML, as DingTalk's markdown renders them."""
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LIST.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def dingtalk_sign(secret: str, now: float) -> tuple[str, str]:
    """(timestamp ms, URL-encoded sign): HMAC-SHA256 keyed by the secret over "timestamp\\nsecret"."""
    stamp = str(int(now * 1000))
    digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
    return stamp, urllib.parse.quote_plus(base64.b64encode(digest).decode())


class DingTalkRobot(Poster):
    name = "dingtalk"
    limit_bytes = 18000  # the robot refuses bodies over 20000 bytes (460101)

    def __init__(self, url: str, secret: str = "", keyword: str = "", timeout_s: float = 10.0,
                 clock: Clock = time.time) -> None:
        super().__init__(url, [secret], timeout_s, clock)
        self.secret, self.keyword = secret, keyword

    def send(self, title: str, text: str) -> Outcome:
        title = with_keyword(title, self.keyword)
        body = {"msgtype": "markdown",
                "markdown": {"title": cut_utf8(title, 200), "text": cut_utf8(f"### {title}\n\n{text}",
                                                                             self.limit_bytes)}}
        url = self.url
        if self.secret:
            stamp, sign = dingtalk_sign(self.secret, self.clock())
            url += ("&" if "?" in url else "?") + f"timestamp={stamp}&sign={sign}"
        return self.post(url, body)

    def escape(self, text: str) -> str:
        return escape_markdown(text)

    def is_clock_skew(self, code: int, message: str) -> bool:
        return code == 310000 and "timestamp" in message.lower()

    def verdict(self, code: int, message: str, retry_after: float | None) -> Outcome:
        outcome = super().verdict(code, message, retry_after)
        if code != 310000:
            return outcome
        low = message.lower()  # 310000 is every security check; the message says which one failed
        hint = ("this host's clock is off: fix NTP/chrony" if "timestamp" in low else
                "check alerts.dingtalk.secret against the robot's signing secret" if "sign" in low else
                "set alerts.dingtalk.keyword to one of the robot's keywords" if "keyword" in low else
                "this host's address is not in the robot's IP allowlist" if "ip" in low else "")
        return replace(outcome, hint=hint)


def _build(alerts: AlertsConfig, host: str, timeout_s: float, clock: Clock) -> tuple[Robot, int] | None:
    d = alerts.dingtalk
    return (DingTalkRobot(d.webhook, d.secret, d.keyword, timeout_s, clock), d.per_minute) if d.webhook else None


VENDOR = Vendor("dingtalk", _build)
