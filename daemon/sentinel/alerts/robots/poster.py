"""What every chat robot shares: the Robot seam, delivery outcomes, and the HTTP post that classifies answers.

The only module of the watchdog that speaks HTTP. Success is HTTP 2xx *and* errcode/code 0; every other
answer becomes an Outcome that says whether to retry later, stop using the channel, or drop the message.
Webhook URLs and secrets are redacted from every text this module produces. Each vendor's module
subclasses `Poster` and declares its `Vendor` (its config table and how its robot is built from it).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import requests

from daemon.core.config import AlertsConfig

log = logging.getLogger(__name__)
# urllib3 logs request lines (with ?access_token=...) at DEBUG; webhook tokens must never reach a log
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

Clock = Callable[[], float]
Response = requests.Response  # for the vendors' overrides: they never import requests themselves


class Delivery(Enum):
    SENT = "sent"
    TRANSIENT = "transient"  # retry later with back-off (rate limit, busy, timeout, 5xx)
    BROKEN = "broken"  # the channel's configuration is wrong: stop retrying, show it in status
    REJECTED = "rejected"  # this message can never be delivered (too long, empty): drop it, log it


@dataclass(frozen=True)
class Outcome:
    delivery: Delivery
    code: str = "0"
    detail: str = ""
    clock_skew: bool = False
    retry_after_s: float | None = None
    hint: str = ""  # what the operator should check, when the code says more than "try again"


class Robot(Protocol):
    name: str  # its [alerts.<name>] table, and the channel's name in status, metrics and the outbox
    limit_bytes: int  # the most message bytes the vendor takes: digests and cuts keep under it

    def send(self, title: str, text: str) -> Outcome: ...

    def escape(self, text: str) -> str:
        """`text` (ours, with producer-chosen names in it) made inert in this vendor's message format."""
        ...


@dataclass(frozen=True)
class Vendor:
    """One robot vendor: the `[alerts.<name>]` table it reads, and its robot built from that table.

    `build(alerts, host, timeout_s, clock)` returns (robot, per_minute), or None when the table leaves the
    robot unconfigured (no webhook). The table's `secret=True` settings are what a secrets file may fill.
    """

    name: str
    build: Callable[[AlertsConfig, str, float, Clock], tuple[Robot, int] | None]


# the vendors' codes, one table: an answer is classified the same whichever robot got it
TRANSIENT_CODES = {130101, 45009, 11232, -1, 99991400}
MESSAGE_CODES = {460101, 101002, 45002, 40008, 44004, 9499}  # wrong for this message, not the robot
# DingTalk 130101 "send too fast": past 20 messages a minute the robot is blocked for 10 minutes, and
# every message sent meanwhile is refused; WeCom 45009 is its per-minute limit, free again within 60 s
BACKOFF_CODES = {130101: 600.0, 45009: 60.0}


def no_mentions(text: str) -> str:
    """<@user> / <at user_id=...> made inert: WeCom's text and Feishu's formats read them as mentions."""
    return text.translate({ord("<"): "＜", ord(">"): "＞"})


class Poster:
    """Shared HTTP plumbing: one session, a timeout on every request, redaction, answer classification."""

    name = "webhook"

    def __init__(self, url: str, secrets: list[str], timeout_s: float, clock: Clock) -> None:
        self.url = url
        self.timeout = (min(5.0, timeout_s), timeout_s)  # (connect, read)
        self.clock = clock
        self.session = requests.Session()
        self.session.trust_env = True
        self._hidden = sorted({s for s in [url, *secrets, *_url_tokens(url)] if len(s) >= 4},
                              key=len, reverse=True)

    def escape(self, text: str) -> str:
        return text  # plain JSON: the receiver decides how to show it

    def redact(self, text: str) -> str:
        for secret in self._hidden:
            text = text.replace(secret, "***")
        return text

    def post(self, url: str, body: dict[str, Any], code_key: str = "errcode") -> Outcome:
        try:
            # UTF-8, not \u escapes: the platforms' byte limits count the body, and escapes double Chinese
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            resp = self.session.post(url, data=data, timeout=self.timeout,
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        except requests.Timeout:
            return Outcome(Delivery.TRANSIENT, "timeout", f"no answer within {self.timeout[1]:g} s")
        except requests.RequestException as exc:
            # the exception text carries the URL (and so the token): keep only the class and a redacted hint
            return Outcome(Delivery.TRANSIENT, "connection", f"{type(exc).__name__}: "
                           f"{self.redact(str(exc))[:200]}")
        return self.classify(resp, code_key)

    def classify(self, resp: requests.Response, code_key: str) -> Outcome:
        retry_after = _retry_after(resp)
        if resp.status_code == 429 or resp.status_code >= 500:
            return Outcome(Delivery.TRANSIENT, f"http {resp.status_code}", self.redact(resp.reason or ""),
                           retry_after_s=retry_after)
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or code_key not in answer:
            if 200 <= resp.status_code < 300:
                return self.without_code(resp)
            return Outcome(Delivery.BROKEN, f"http {resp.status_code}", self.redact(resp.text[:200]))
        code = _int(answer.get(code_key))
        message = self.redact(str(answer.get("errmsg", answer.get("msg", ""))))[:300]
        if code == 0 and 200 <= resp.status_code < 300:
            return Outcome(Delivery.SENT)
        return self.verdict(code, message, retry_after)

    def without_code(self, resp: requests.Response) -> Outcome:
        # a robot always answers with a code; a 2xx without one is a proxy or portal page: try again later
        return Outcome(Delivery.TRANSIENT, f"http {resp.status_code}", "answer without an error code")

    def verdict(self, code: int, message: str, retry_after: float | None) -> Outcome:
        if code in TRANSIENT_CODES:
            wait = max(retry_after or 0.0, BACKOFF_CODES.get(code, 0.0)) or None
            return Outcome(Delivery.TRANSIENT, str(code), message, retry_after_s=wait)
        if code in MESSAGE_CODES:
            return Outcome(Delivery.REJECTED, str(code), message)
        return Outcome(Delivery.BROKEN, str(code), message, clock_skew=self.is_clock_skew(code, message))

    def is_clock_skew(self, code: int, message: str) -> bool:
        return False


def with_keyword(title: str, keyword: str) -> str:
    # keyword security: the robot drops (310000) any message that does not contain the keyword
    return f"{keyword} {title}" if keyword and keyword not in title else title


def _url_tokens(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    tokens = [v for _k, v in urllib.parse.parse_qsl(parts.query)]
    tokens += [seg for seg in parts.path.split("/") if len(seg) >= 16]  # Feishu: /bot/v2/hook/<token>
    return tokens


def _retry_after(resp: requests.Response) -> float | None:
    for header in ("Retry-After", "x-ogw-ratelimit-reset"):
        value = resp.headers.get(header)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -999
