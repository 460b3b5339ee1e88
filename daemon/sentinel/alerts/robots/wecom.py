"""WeCom's group robot: markdown or text messages by byte limit, shortened when it answers "too long"."""

from __future__ import annotations

import logging
import time

from daemon.core.config import AlertsConfig
from daemon.sentinel.alerts.alert import cut_utf8
from daemon.sentinel.alerts.robots.poster import Clock, Delivery, Outcome, Poster, Robot, Vendor, no_mentions

log = logging.getLogger(__name__)

WECOM_TOO_LONG = 40058  # WeCom's answer to content it cannot take: shorten it, then drop it; never "broken"
WECOM_SHORTEN_TRIES = 3  # each try halves the content, down to WECOM_SHORTEST bytes
WECOM_SHORTEST = 256

# WeCom's markdown documents no escape character, and reads <@user> as a mention (<@all> pings the
# whole group): the specials become their full-width look-alikes instead
_FULL_WIDTH = str.maketrans({"*": "＊", "_": "＿", "[": "［", "]": "］", "`": "｀", "<": "＜", ">": "＞",
                             "#": "＃", "~": "～", "|": "｜"})


def escape_full_width(text: str) -> str:
    return text.translate(_FULL_WIDTH)


class WeComRobot(Poster):
    name = "wecom"
    LIMITS = {"markdown": 4096, "text": 2048}

    def __init__(self, url: str, msgtype: str = "markdown", timeout_s: float = 10.0,
                 clock: Clock = time.time) -> None:
        super().__init__(url, [], timeout_s, clock)
        self.msgtype = msgtype
        self.limit_bytes = self.LIMITS[msgtype]

    def send(self, title: str, text: str) -> Outcome:
        content = f"**{title}**\n{text}" if self.msgtype == "markdown" else f"{title}\n{text}"
        limit = self.limit_bytes
        for _try in range(WECOM_SHORTEN_TRIES + 1):
            body = {"msgtype": self.msgtype, self.msgtype: {"content": cut_utf8(content, limit)}}
            outcome = self.post(self.url, body)
            if outcome.code != str(WECOM_TOO_LONG):
                if _try and outcome.delivery is Delivery.SENT:
                    log.warning("wecom answered %d (content too long): sent shortened to %d bytes",
                                WECOM_TOO_LONG, limit)
                return outcome
            limit = min(limit, len(content.encode("utf-8"))) // 2
            if limit < WECOM_SHORTEST:
                break
        return Outcome(Delivery.REJECTED, str(WECOM_TOO_LONG), f"{outcome.detail}: refused even shortened; "
                       "this message is dropped (the channel stays in use)")

    def escape(self, text: str) -> str:
        return escape_full_width(text) if self.msgtype == "markdown" else no_mentions(text)


def _build(alerts: AlertsConfig, host: str, timeout_s: float, clock: Clock) -> tuple[Robot, int] | None:
    w = alerts.wecom
    return (WeComRobot(w.webhook, w.msgtype, timeout_s, clock), w.per_minute) if w.webhook else None


VENDOR = Vendor("wecom", _build)
