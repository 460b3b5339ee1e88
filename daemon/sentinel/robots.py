"""Chat-robot senders (DingTalk, WeCom, Feishu/Lark, generic JSON webhook): sign, shape, post, classify.

The only module of the watchdog that speaks HTTP. Success is HTTP 2xx *and* errcode/code 0; every other
answer becomes an Outcome that says whether to retry later, stop using the channel, or drop the message.
Webhook URLs and secrets are redacted from every text this module produces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Protocol

import requests

from daemon.sentinel.alert import cut_utf8

log = logging.getLogger(__name__)
# urllib3 logs request lines (with ?access_token=...) at DEBUG; webhook tokens must never reach a log
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

Clock = Callable[[], float]


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
    name: str

    def send(self, title: str, text: str) -> Outcome: ...

    def escape(self, text: str) -> str:
        """`text` (ours, with producer-chosen names in it) made inert in this vendor's message format."""
        ...


TRANSIENT_CODES = {130101, 45009, 11232, -1, 99991400}
MESSAGE_CODES = {460101, 101002, 45002, 40008, 44004, 9499}  # wrong for this message, not the robot
# DingTalk 130101 "send too fast": past 20 messages a minute the robot is blocked for 10 minutes, and
# every message sent meanwhile is refused; WeCom 45009 is its per-minute limit, free again within 60 s
BACKOFF_CODES = {130101: 600.0, 45009: 60.0}
WECOM_TOO_LONG = 40058  # WeCom's answer to content it cannot take: shorten it, then drop it; never "broken"
WECOM_SHORTEN_TRIES = 3  # each try halves the content, down to WECOM_SHORTEST bytes
WECOM_SHORTEST = 256
FEISHU_SIGNATURE = 19021
FEISHU_HINT = ("Feishu 19021 means the signature or the timestamp is wrong: check alerts.feishu.secret "
               "against the bot's signing secret, and this host's clock (NTP/chrony); the timestamp must be "
               "within an hour of Feishu's")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|<>~])")
_MD_LIST = re.compile(r"^(\s*)([-+]|\d+\.)(?=\s)", re.M)  # "- x", "+ x", "1. x" at a line start


def escape_markdown(text: str) -> str:
    """CommonMark escapes (any ASCII punctuation may be backslash-escaped) for the characters that would
    turn a name into emphasis, a link, a heading, a list or HTML, as DingTalk's markdown renders them."""
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LIST.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


# WeCom's and Feishu's formats document no escape character, and read <@user> / <at user_id=...> as
# mentions (<@all> pings the whole group): the specials become their full-width look-alikes instead
_FULL_WIDTH = str.maketrans({"*": "＊", "_": "＿", "[": "［", "]": "］", "`": "｀", "<": "＜", ">": "＞",
                             "#": "＃", "~": "～", "|": "｜"})


def escape_full_width(text: str) -> str:
    return text.translate(_FULL_WIDTH)


def _no_mentions(text: str) -> str:
    return text.translate({ord("<"): "＜", ord(">"): "＞"})


def dingtalk_sign(secret: str, now: float) -> tuple[str, str]:
    """(timestamp ms, URL-encoded sign): HMAC-SHA256 keyed by the secret over "timestamp\\nsecret"."""
    stamp = str(int(now * 1000))
    digest = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
    return stamp, urllib.parse.quote_plus(base64.b64encode(digest).decode())


def feishu_sign(secret: str, now: float) -> tuple[str, str]:
    """(timestamp s, sign): the key is "timestamp\\nsecret", the message is empty, no URL-encoding."""
    stamp = str(int(now))
    digest = hmac.new(f"{stamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return stamp, base64.b64encode(digest).decode()


class _Poster:
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


class DingTalkRobot(_Poster):
    name = "dingtalk"
    limit_bytes = 18000  # the robot refuses bodies over 20000 bytes (460101)

    def __init__(self, url: str, secret: str = "", keyword: str = "", timeout_s: float = 10.0,
                 clock: Clock = time.time) -> None:
        super().__init__(url, [secret], timeout_s, clock)
        self.secret, self.keyword = secret, keyword

    def send(self, title: str, text: str) -> Outcome:
        title = _with_keyword(title, self.keyword)
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


class WeComRobot(_Poster):
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
        return escape_full_width(text) if self.msgtype == "markdown" else _no_mentions(text)


class FeishuRobot(_Poster):
    name = "feishu"
    limit_bytes = 16000  # the request body may be at most 20 KB

    def __init__(self, url: str, secret: str = "", keyword: str = "", timeout_s: float = 10.0,
                 clock: Clock = time.time) -> None:
        super().__init__(url, [secret], timeout_s, clock)
        self.secret, self.keyword = secret, keyword

    def send(self, title: str, text: str) -> Outcome:
        content = cut_utf8(f"{_with_keyword(title, self.keyword)}\n{text}", self.limit_bytes)
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": content}}
        if self.secret:
            body["timestamp"], body["sign"] = feishu_sign(self.secret, self.clock())
        return self.post(self.url, body, code_key="code")

    def escape(self, text: str) -> str:
        return _no_mentions(text)  # a text message: no markup, but <at user_id="all"> pings everyone

    def verdict(self, code: int, message: str, retry_after: float | None) -> Outcome:
        if code == FEISHU_SIGNATURE:  # "sign match fail or timestamp is not within one hour": either one
            return Outcome(Delivery.BROKEN, str(code), message, clock_skew=True, hint=FEISHU_HINT)
        return super().verdict(code, message, retry_after)


class JsonWebhook(_Poster):
    name = "webhook"
    limit_bytes = 60000

    def __init__(self, url: str, host: str, timeout_s: float = 10.0, clock: Clock = time.time) -> None:
        super().__init__(url, [], timeout_s, clock)
        self.host = host

    def send(self, title: str, text: str) -> Outcome:
        body = {"title": title, "text": cut_utf8(text, self.limit_bytes), "host": self.host,
                "sent_at": self.clock()}
        return self.post(self.url, body)

    def without_code(self, resp: requests.Response) -> Outcome:
        return Outcome(Delivery.SENT)  # a plain receiver answers 2xx with any body


def _with_keyword(title: str, keyword: str) -> str:
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
