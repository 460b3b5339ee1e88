"""What each chat vendor's own error codes and formats require, against the loopback impersonator:
DingTalk's 10-minute block (test_alerts_delivery), WeCom's 40058, Feishu's 19021, and escaping names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_server import DING_SECRET, FEISHU_SECRET, ChatServer

from daemon.sentinel.alerts.alert import Alert, Severity
from daemon.sentinel.alerts.courier import Courier
from daemon.sentinel.alerts.outbox import Store
from daemon.sentinel.alerts.robots import Delivery, DingTalkRobot, FeishuRobot, WeComRobot

EVIL = "lesson *01* _draft_ [click](http://evil.example) <@all> <at user_id=\"all\"></at> #1 `x`"


@pytest.fixture
def server() -> Iterator[ChatServer]:
    srv = ChatServer(wecom_40058_above=1000).start()
    yield srv
    srv.down()


def courier(robot: object, tmp_path: Path) -> Courier:
    return Courier(robot, 15, Store(tmp_path / robot.name, None))  # type: ignore[arg-type, attr-defined]


def test_wecom_40058_sends_the_message_shortened_and_the_channel_stays_ok(server: ChatServer,
                                                                           tmp_path: Path) -> None:
    c = courier(WeComRobot(server.wecom_url), tmp_path)
    c.put(Alert("k", Severity.WARNING, "many failures", "line of detail\n" * 200))  # 3000 bytes
    assert c.pump(time.time()).delivery is Delivery.SENT  # type: ignore[union-attr]
    (got,) = server.texts("wecom")
    assert len(got.encode()) <= 1000 and got.endswith("…") and got.startswith("**many failures**")
    assert c.snapshot()["state"] == "ok" and c.snapshot()["failed"] == 0


def test_wecom_40058_on_every_try_drops_that_message_only(server: ChatServer, tmp_path: Path) -> None:
    server.wecom_40058_above = 0  # nothing is short enough
    c = courier(WeComRobot(server.wecom_url), tmp_path)
    c.put(Alert("k", Severity.WARNING, "too long", "x" * 3000))
    out = c.pump(time.time())
    assert out is not None and out.delivery is Delivery.REJECTED and out.code == "40058"
    assert c.snapshot()["state"] == "ok" and c.snapshot()["rejected"] == 1 and not c.pending
    server.wecom_40058_above = None
    c.put(Alert("k2", Severity.WARNING, "next one", "short"))
    assert c.pump(time.time()).delivery is Delivery.SENT  # type: ignore[union-attr]  # not an hour offline


def test_feishu_19021_names_both_the_secret_and_the_clock(server: ChatServer) -> None:
    out = FeishuRobot(server.feishu_url, "not-the-secret").send("t", "x")
    assert out.delivery is Delivery.BROKEN and out.code == "19021"
    assert "alerts.feishu.secret" in out.hint and "clock" in out.hint and "signature or the timestamp" in out.hint
    skewed = FeishuRobot(server.feishu_url, FEISHU_SECRET, clock=lambda: time.time() - 7200).send("t", "x")
    assert skewed.code == "19021" and skewed.hint == out.hint  # the answer cannot tell the two apart


def test_dingtalk_310000_hint_says_which_check_failed(server: ChatServer) -> None:
    wrong = DingTalkRobot(server.dingtalk_url, "SECnot-the-secret").send("t", "x")
    assert wrong.code == "310000" and "alerts.dingtalk.secret" in wrong.hint
    late = DingTalkRobot(server.dingtalk_url, DING_SECRET, clock=lambda: time.time() - 7200).send("t", "x")
    assert late.clock_skew and "NTP" in late.hint


def test_job_names_are_escaped_for_each_vendors_format(server: ChatServer, tmp_path: Path) -> None:
    robots = [DingTalkRobot(server.dingtalk_url, DING_SECRET), WeComRobot(server.wecom_url),
              FeishuRobot(server.feishu_url, FEISHU_SECRET)]
    for robot in robots:
        c = courier(robot, tmp_path)
        c.put(Alert("k", Severity.WARNING, f"job {EVIL} failed", f"{EVIL}: video truncated"))
        assert c.pump(time.time()).delivery is Delivery.SENT  # type: ignore[union-attr]
    ding, = server.texts("dingtalk")
    assert r"lesson \*01\* \_draft\_ \[click\]\(http://evil.example\) \<@all\>" in ding
    assert ding.startswith("### job lesson")  # our own heading markup is kept
    wecom, = server.texts("wecom")
    assert "lesson ＊01＊ ＿draft＿ ［click］(http://evil.example) ＜@all＞" in wecom and "<@all>" not in wecom
    assert wecom.startswith("**job lesson")
    feishu, = server.texts("feishu")
    assert "＜at user_id=\"all\"＞" in feishu and "<at" not in feishu
    assert "*01* _draft_" in feishu  # plain text: no markup to escape, names read as typed


def test_a_digest_escapes_each_line_but_keeps_its_own_list(server: ChatServer, tmp_path: Path) -> None:
    c = courier(DingTalkRobot(server.dingtalk_url, DING_SECRET), tmp_path)
    for i in range(6):  # more than the bucket's 3 tokens: the rest go out as one digest
        c.put(Alert(f"k{i}", Severity.WARNING, f"job *{i}* failed", "x"))
    now = time.time()
    while c.pump(now) is not None:
        pass
    (digest,) = server.texts("dingtalk")
    assert digest.startswith("### 6 alerts \\(digest\\)")
    assert "\n- \\[warning\\] job \\*0\\* failed: x\n- \\[warning\\] job \\*1\\*" in digest
