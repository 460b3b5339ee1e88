"""Each robot against a local server that checks signatures and limits the way the platforms do."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from chat_server import DING_SECRET, FEISHU_SECRET, TOKEN, WECOM_KEY, ChatServer

from daemon.core.config import load_config
from daemon.sentinel.alerts.alert import Alert, Severity, cut_utf8
from daemon.sentinel.alerts.channels import build_outbox
from daemon.sentinel.alerts.robots import VENDORS, Delivery, DingTalkRobot, FeishuRobot, JsonWebhook, WeComRobot


@pytest.fixture
def server(chat: ChatServer) -> ChatServer:
    return chat  # conftest's robot server


def ding(server: ChatServer, **kw: object) -> DingTalkRobot:
    return DingTalkRobot(server.dingtalk_url, secret=DING_SECRET, keyword="lipsyncd", timeout_s=2, **kw)


def feishu(server: ChatServer, **kw: object) -> FeishuRobot:
    return FeishuRobot(server.feishu_url, secret=FEISHU_SECRET, timeout_s=2, **kw)


def test_signed_dingtalk_message_with_keyword_is_accepted(server: ChatServer) -> None:
    out = ding(server).send("worker gpu0 stalled", "no progress for 301 s; restarted")
    assert out.delivery is Delivery.SENT
    [got] = server.received
    assert got.body["msgtype"] == "markdown"
    assert "lipsyncd" in got.body["markdown"]["title"] and "301 s" in got.text


def test_dingtalk_wrong_secret_is_broken_not_retried(server: ChatServer) -> None:
    out = DingTalkRobot(server.dingtalk_url, secret="SECwrong", keyword="lipsyncd").send("t", "x")
    assert (out.delivery, out.code, out.clock_skew) == (Delivery.BROKEN, "310000", False)
    assert "sign" in out.detail


def test_dingtalk_skewed_clock_is_reported_as_clock_skew(server: ChatServer) -> None:
    out = ding(server, clock=lambda: time.time() - 7200).send("t", "x")
    assert (out.delivery, out.code, out.clock_skew) == (Delivery.BROKEN, "310000", True)


def test_dingtalk_missing_keyword_is_refused_by_the_robot(server: ChatServer) -> None:
    out = DingTalkRobot(server.dingtalk_url, secret=DING_SECRET).send("plain title", "x")
    assert (out.delivery, out.code) == (Delivery.BROKEN, "310000")
    assert server.received == []


def test_dingtalk_long_chinese_text_is_cut_by_bytes_and_accepted(server: ChatServer) -> None:
    out = ding(server).send("任务失败", "视频无法解码。" * 5000)  # ~105 KB of 3-byte characters
    assert out.delivery is Delivery.SENT
    text = server.received[0].text
    assert len(text.encode("utf-8")) <= 18000 and text.endswith("…")


@pytest.mark.parametrize(("code", "delivery"), [
    (130101, Delivery.TRANSIENT), (300005, Delivery.BROKEN), (460101, Delivery.REJECTED),
    (310000, Delivery.BROKEN)])
def test_dingtalk_error_codes_are_classified(server: ChatServer, code: int, delivery: Delivery) -> None:
    server.script.items.append(("code", code, "forced answer"))
    out = ding(server).send("t", "x")
    assert (out.delivery, out.code) == (delivery, str(code))
    if code == 130101:
        assert out.retry_after_s is not None and out.retry_after_s >= 60


def test_wecom_markdown_and_text_limits_hold(server: ChatServer) -> None:
    big = "磁盘空间不足。" * 1000
    for msgtype, limit in (("markdown", 4096), ("text", 2048)):
        assert WeComRobot(server.wecom_url, msgtype=msgtype).send("告警", big).delivery is Delivery.SENT
        assert len(server.received[-1].text.encode("utf-8")) <= limit


@pytest.mark.parametrize(("code", "delivery"), [
    (45009, Delivery.TRANSIENT), (-1, Delivery.TRANSIENT), (93000, Delivery.BROKEN),
    (40008, Delivery.REJECTED), (44004, Delivery.REJECTED)])
def test_wecom_error_codes_are_classified(server: ChatServer, code: int, delivery: Delivery) -> None:
    server.script.items.append(("code", code))
    assert WeComRobot(server.wecom_url).send("t", "x").delivery is delivery


def test_wecom_bad_key_is_broken(server: ChatServer) -> None:
    out = WeComRobot(server.wecom_url.replace(WECOM_KEY, "nope")).send("t", "x")
    assert (out.delivery, out.code) == (Delivery.BROKEN, "93000")


def test_signed_feishu_message_is_accepted_with_fields_in_body(server: ChatServer) -> None:
    assert feishu(server).send("GPU lost", "gpu0 vanished").delivery is Delivery.SENT
    body = server.received[0].body
    assert body["msg_type"] == "text" and len(body["timestamp"]) == 10 and body["sign"]


def test_feishu_millisecond_timestamp_mistake_is_clock_skew(server: ChatServer) -> None:
    # a DingTalk-style millisecond timestamp is "not within one hour": the 19021 answer
    out = feishu(server, clock=lambda: time.time() * 1000).send("t", "x")
    assert (out.delivery, out.code, out.clock_skew) == (Delivery.BROKEN, "19021", True)


@pytest.mark.parametrize(("code", "delivery"), [(11232, Delivery.TRANSIENT), (9499, Delivery.REJECTED)])
def test_feishu_error_codes_are_classified(server: ChatServer, code: int, delivery: Delivery) -> None:
    server.script.items.append(("code", code))
    assert feishu(server).send("t", "x").delivery is delivery


@pytest.mark.parametrize("status", [429, 500, 503])
def test_http_busy_answers_are_transient(server: ChatServer, status: int) -> None:
    server.script.items.append(("http", status))
    out = feishu(server).send("t", "x")
    assert (out.delivery, out.code) == (Delivery.TRANSIENT, f"http {status}")


def test_hanging_server_times_out_as_transient(server: ChatServer) -> None:
    server.script.items.append(("hang", 30))
    robot = DingTalkRobot(server.dingtalk_url, secret=DING_SECRET, keyword="lipsyncd", timeout_s=0.5)
    started = time.monotonic()
    out = robot.send("t", "x")
    assert out.delivery is Delivery.TRANSIENT and out.code == "timeout"
    assert time.monotonic() - started < 5


def test_server_down_is_transient(server: ChatServer) -> None:
    server.down()
    out = JsonWebhook(server.webhook_url, host="h1", timeout_s=1).send("t", "x")
    assert (out.delivery, out.code) == (Delivery.TRANSIENT, "connection")


def test_generic_webhook_gets_title_text_and_host(server: ChatServer) -> None:
    assert JsonWebhook(server.webhook_url, host="h1").send("title", "body").delivery is Delivery.SENT
    assert server.received[0].body["host"] == "h1"


def test_tokens_and_secrets_never_reach_logs(server: ChatServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = []
    server.script.items += [("code", 310000, f"sign not match {TOKEN}"), ("hang", 30), ("http", 502)]
    robot = DingTalkRobot(server.dingtalk_url, secret=DING_SECRET, keyword="lipsyncd", timeout_s=0.5)
    for _ in range(4):
        outcomes.append(robot.send("t", "x"))
    server.down()
    outcomes.append(robot.send("t", "x"))
    outcomes.append(feishu(server).send("t", "x"))
    logging.getLogger("test").warning("outcomes: %s", outcomes)
    everything = caplog.text + repr(outcomes)
    assert "***" in repr(outcomes)  # the echoed token was there and got redacted
    for secret in (TOKEN, DING_SECRET, FEISHU_SECRET):
        assert secret not in everything


def test_cut_utf8_never_splits_a_character() -> None:
    for n in range(0, 40):
        cut = cut_utf8("语音驱动口型" * 3, n)
        assert len(cut.encode("utf-8")) <= max(n, 3) and "\ufffd" not in cut


def test_every_robot_in_the_vendor_table_is_built_from_its_alerts_table_and_delivers(
        server: ChatServer, tmp_path: Path) -> None:
    urls = {"dingtalk": server.dingtalk_url, "wecom": server.wecom_url, "feishu": server.feishu_url,
            "webhook": server.webhook_url}
    assert list(urls) == list(VENDORS)  # a robot added to the table needs its server endpoint here
    root = tmp_path / "share"
    (root / ".lipsyncd").mkdir(parents=True)
    assert build_outbox(load_config(None, str(root), env={}), "h1", None).couriers == []
    # every secret key comes from the secrets file: each table's secret settings are what it may fill
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f"[dingtalk]\nwebhook = '{urls['dingtalk']}'\nsecret = '{DING_SECRET}'\n"
                       f"[wecom]\nwebhook = '{urls['wecom']}'\n"
                       f"[feishu]\nwebhook = '{urls['feishu']}'\nsecret = '{FEISHU_SECRET}'\n"
                       f"[webhook]\nurl = '{urls['webhook']}'\n")
    secrets.chmod(0o600)
    env = {"LIPSYNCD_ALERTS_SECRETS_FILE": str(secrets), "LIPSYNCD_ALERTS_DINGTALK_KEYWORD": "lipsyncd"}
    config = load_config(None, str(root), env=env)
    outbox = build_outbox(config, "h1", None)
    assert [c.name for c in outbox.couriers] == list(VENDORS)
    for courier in outbox.couriers:
        assert courier.robot.name == courier.name
        assert courier.bucket.rate * 60 == pytest.approx(getattr(config.alerts, courier.name).per_minute)
    outbox.put(Alert("test:table", Severity.WARNING, "table check", "one message per robot"))
    for courier in outbox.couriers:
        assert courier.pump(time.time()) is not None
    assert sorted(r.platform for r in server.received) == sorted(VENDORS)
    assert all("one message per robot" in r.text for r in server.received)
