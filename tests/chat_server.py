"""A loopback HTTP server that impersonates the DingTalk, WeCom and Feishu robots and a plain webhook.

It checks signatures, keywords and size limits the way the platforms do, records what it accepted,
and can be told to answer an error code, an HTTP status, hang, or go down and come back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "tok3n-0123456789abcdef0123456789abcdef"
DING_SECRET = "SECdeadbeef0123456789abcdef0123456789abcdef"
FEISHU_SECRET = "fs-secret-0123456789abcdef"
WECOM_KEY = "wecom-key-0123456789abcdef"


@dataclass
class Received:
    platform: str
    body: dict[str, Any]
    at: float

    @property
    def text(self) -> str:
        if self.platform == "dingtalk":
            return str(self.body["markdown"]["text"])
        if self.platform == "wecom":
            return str(self.body[self.body["msgtype"]]["content"])
        if self.platform == "feishu":
            return str(self.body["content"]["text"])
        return f"{self.body['title']}\n{self.body['text']}"


@dataclass
class Script:
    """Forced answers, consumed one per request: ("code", n, msg) | ("http", status) | ("hang", s)."""

    items: list[tuple[Any, ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pop(self) -> tuple[Any, ...] | None:
        with self.lock:
            return self.items.pop(0) if self.items else None


class ChatServer:
    def __init__(self, ding_keyword: str = "", feishu_signed: bool = True, ding_signed: bool = True,
                 clock_skew_s: float = 0.0, wecom_40058_above: int | None = None) -> None:
        self.ding_keyword, self.ding_signed, self.feishu_signed = ding_keyword, ding_signed, feishu_signed
        self.wecom_40058_above = wecom_40058_above  # content bytes above which WeCom answers 40058
        self.clock_skew_s = clock_skew_s  # the server's clock minus ours
        self.received: list[Received] = []
        self.requests = 0
        self.script = Script()
        # forced answers for one platform only ("dingtalk", "wecom", "feishu", "webhook"), after `script`
        self.scripts: dict[str, Script] = {p: Script() for p in ("dingtalk", "wecom", "feishu", "webhook")}
        # forced answers for every request within a time window: (until, platform or None, answer)
        self.windows: list[tuple[float, str | None, tuple[Any, ...]]] = []
        self.port = _free_port()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()  # set to end every hanging request at once

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> ChatServer:
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: clients now get "connection refused"."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def up(self) -> None:
        self.start()

    def during(self, seconds: float, answer: tuple[Any, ...], platform: str | None = None) -> None:
        """Answer every request (of one platform, or all) this way for the next `seconds`."""
        self.windows.append((time.time() + seconds, platform, answer))

    def _window(self, platform: str) -> tuple[Any, ...] | None:
        now = time.time()
        return next((a for until, p, a in self.windows if now < until and p in (None, platform)), None)

    @property
    def listening(self) -> bool:
        return self._server is not None

    # --- URLs the robots are configured with ------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dingtalk_url(self) -> str:
        return f"{self.base}/robot/send?access_token={TOKEN}"

    @property
    def wecom_url(self) -> str:
        return f"{self.base}/cgi-bin/webhook/send?key={WECOM_KEY}"

    @property
    def feishu_url(self) -> str:
        return f"{self.base}/open-apis/bot/v2/hook/{TOKEN}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/hook"

    def texts(self, platform: str | None = None) -> list[str]:
        return [r.text for r in self.received if platform in (None, r.platform)]

    # --- the platforms' rules ---------------------------------------------------------------------
    def answer(self, path: str, query: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        self.requests += 1
        forced = self.script.pop() or self.scripts[_platform(path)].pop() or self._window(_platform(path))
        if forced is not None:
            if forced[0] == "hang":
                self._release.wait(forced[1])
                return 503, {"error": "hung, then went away"}  # never a success the client could count
            if forced[0] == "http":
                return forced[1], {"error": "forced"}
        body = json.loads(raw.decode("utf-8"))
        if path == "/robot/send":
            ok, code, msg = self.dingtalk(query, body, raw, forced)
            return 200, {"errcode": code, "errmsg": msg} if not ok else {"errcode": 0, "errmsg": "ok"}
        if path == "/cgi-bin/webhook/send":
            ok, code, msg = self.wecom(query, body, forced)
            return 200, {"errcode": code, "errmsg": msg}
        if path.startswith("/open-apis/bot/v2/hook/"):
            ok, code, msg = self.feishu(path, body, raw, forced)
            return 200, {"code": code, "msg": msg}
        if path == "/hook":
            self.received.append(Received("webhook", body, time.time()))
            return 200, {"ok": True}
        return 404, {"error": "no such path"}

    def dingtalk(self, query: dict[str, str], body: dict[str, Any], raw: bytes,
                 forced: tuple[Any, ...] | None) -> tuple[bool, int, str]:
        if query.get("access_token") != TOKEN:
            return False, 300005, "token is not exist"
        if self.ding_signed:
            stamp = query.get("timestamp", "0")
            if abs(int(stamp) / 1000 - (time.time() + self.clock_skew_s)) > 3600:
                return False, 310000, "invalid timestamp"
            want = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{stamp}\n{DING_SECRET}".encode(),
                                             hashlib.sha256).digest()).decode()
            if query.get("sign") != want:  # parse_qs already URL-decoded it once
                return False, 310000, "sign not match"
        if len(raw) > 20000:
            return False, 460101, "message too long"
        if self.ding_keyword and self.ding_keyword not in json.dumps(body, ensure_ascii=False):
            return False, 310000, "keywords not in content"
        if forced is not None:
            return False, forced[1], forced[2] if len(forced) > 2 else "forced"
        self.received.append(Received("dingtalk", body, time.time()))
        return True, 0, "ok"

    def wecom(self, query: dict[str, str], body: dict[str, Any],
              forced: tuple[Any, ...] | None) -> tuple[bool, int, str]:
        if query.get("key") != WECOM_KEY:
            return False, 93000, "invalid webhook url"
        kind = body.get("msgtype")
        if kind not in ("text", "markdown"):
            return False, 40008, "invalid message type"
        content = body[kind].get("content", "")
        if not content:
            return False, 44004, "empty content"
        if len(content.encode("utf-8")) > {"text": 2048, "markdown": 4096}[kind]:
            return False, 45002, "content size out of limit"
        if self.wecom_40058_above is not None and len(content.encode("utf-8")) > self.wecom_40058_above:
            return False, 40058, "invalid Request Parameter, hint: [content exceed max length]"
        if forced is not None:
            return False, forced[1], forced[2] if len(forced) > 2 else "forced"
        self.received.append(Received("wecom", body, time.time()))
        return True, 0, "ok"

    def feishu(self, path: str, body: dict[str, Any], raw: bytes,
               forced: tuple[Any, ...] | None) -> tuple[bool, int, str]:
        if not path.endswith(TOKEN):
            return False, 19001, "param invalid: incoming webhook access token invalid"
        if self.feishu_signed:
            stamp = str(body.get("timestamp", "0"))
            want = base64.b64encode(hmac.new(f"{stamp}\n{FEISHU_SECRET}".encode(), b"",
                                             hashlib.sha256).digest()).decode()
            fresh = abs(int(stamp) - (time.time() + self.clock_skew_s)) <= 3600
            if not fresh or body.get("sign") != want:
                return False, 19021, "sign match fail or timestamp is not within one hour from current time"
        if len(raw) > 20 * 1024:
            return False, 9499, "Bad Request"
        if forced is not None:
            return False, forced[1], forced[2] if len(forced) > 2 else "forced"
        self.received.append(Received("feishu", body, time.time()))
        return True, 0, "success"


class _Handler(BaseHTTPRequestHandler):
    server_owner: ChatServer

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status, answer = self.server_owner.answer(parts.path, query, raw)
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (its timeout) while we hung

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass


def _platform(path: str) -> str:
    if path == "/robot/send":
        return "dingtalk"
    if path == "/cgi-bin/webhook/send":
        return "wecom"
    return "feishu" if path.startswith("/open-apis/") else "webhook"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
