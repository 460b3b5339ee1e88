"""Delivery through the outbox and couriers: budgets, digests, outages, broken channels, persistence."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from chat_server import DING_SECRET, FEISHU_SECRET, ChatServer

from daemon.sentinel.alerts import courier as courier_mod
from daemon.sentinel.alerts.alert import Alert, Severity
from daemon.sentinel.alerts.courier import Courier
from daemon.sentinel.alerts.outbox import Outbox, Store
from daemon.sentinel.alerts.robots import Delivery, DingTalkRobot, FeishuRobot, WeComRobot


class FakeClock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server(chat: ChatServer) -> ChatServer:
    return chat  # conftest's robot server


def alert(i: int, key: str = "job") -> Alert:
    return Alert(f"{key}:{i}", Severity.WARNING, f"job J{i:03d} failed", f"reason {i}: video truncated")


def drain(courier: Courier, clock: FakeClock, seconds: int) -> list[float]:
    """Advance the fake clock a second at a time, pumping; returns the times of accepted sends."""
    sent = []
    for _ in range(seconds):
        while (out := courier.pump(clock())) is not None:
            if out.delivery is Delivery.SENT:
                sent.append(clock())
        clock.t += 1
    return sent


def most_in_a_minute(times: list[float]) -> int:
    return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


@pytest.mark.parametrize("platform", ["dingtalk", "wecom"])
def test_hundred_failures_in_a_minute_stay_under_the_limit_with_digests(
        server: ChatServer, tmp_path: Path, platform: str) -> None:
    clock = FakeClock()
    robot = (DingTalkRobot(server.dingtalk_url, DING_SECRET, "lipsyncd", clock=clock)
             if platform == "dingtalk" else WeComRobot(server.wecom_url, "markdown", clock=clock))
    store = Store(tmp_path / "outbox", None)
    courier = Courier(robot, 15, store, clock=clock)
    outbox = Outbox([courier], store, tmp_path / "alerts.jsonl", None)
    for i in range(100):
        outbox.put(alert(i))
        clock.t += 0.5  # 100 failures within 50 s, pumping as they come
        while courier.pump(clock()) is not None:
            pass
    sent = drain(courier, clock, 600)
    assert most_in_a_minute(sent) <= 18  # the platform blocks the robot at 20/min
    texts = "\n".join(server.texts(platform))
    assert all(f"J{i:03d}" in texts for i in range(100))  # every failure reached the chat
    assert any("digest" in t for t in texts.splitlines()) or "digest" in texts
    assert len(server.received) < 100
    journal = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert sorted(j["title"] for j in journal) == sorted(f"job J{i:03d} failed" for i in range(100))
    assert not list((tmp_path / "outbox").rglob("*.json"))  # all delivered, nothing left behind


def test_feishu_burst_stays_under_five_per_second(server: ChatServer, tmp_path: Path) -> None:
    clock = FakeClock()
    courier = Courier(FeishuRobot(server.feishu_url, FEISHU_SECRET, clock=clock), 95,
                      Store(tmp_path, None), clock=clock)
    sent = []
    for i in range(40):
        courier.put(alert(i))
        clock.t += 0.1
        while courier.pump(clock()) is not None:
            sent.append(clock())  # every attempt counts against the 5/s limit
    sent += drain(courier, clock, 120)
    assert max(sum(1 for u in sent if t <= u < t + 1) for t in sent) <= 5
    assert all(f"J{i:03d}" in "\n".join(server.texts()) for i in range(40))


def test_outage_keeps_alerts_on_disk_and_delivers_them_after_a_restart(server: ChatServer,
                                                                       tmp_path: Path) -> None:
    clock = FakeClock()
    server.down()
    store = Store(tmp_path / "outbox", None)
    robot = DingTalkRobot(server.dingtalk_url, DING_SECRET, "lipsyncd", timeout_s=1, clock=clock)
    first = Courier(robot, 15, store, clock=clock)
    first.put(alert(1, "stall"))
    first.put(alert(2, "stall"))
    assert first.pump(clock()).delivery is Delivery.TRANSIENT  # type: ignore[union-attr]
    assert first.pump(clock()) is None  # backing off: no hammering
    assert first.snapshot()["state"] == "retrying" and first.snapshot()["pending"] == 2
    assert len(list((tmp_path / "outbox" / "dingtalk").glob("*.json"))) == 2
    # the watchdog restarts; the chat comes back
    server.up()
    second = Courier(robot, 15, store, clock=clock)
    assert Outbox([second], store, None, None).recover() == 2
    drain(second, clock, 5)
    assert "J001" in "\n".join(server.texts()) and "J002" in "\n".join(server.texts())
    assert not list((tmp_path / "outbox" / "dingtalk").glob("*.json"))


def test_backoff_grows_and_resets(server: ChatServer, tmp_path: Path) -> None:
    clock = FakeClock()
    server.script.items += [("http", 503)] * 3
    courier = Courier(WeComRobot(server.wecom_url, clock=clock), 15, Store(tmp_path, None), clock=clock)
    courier.put(alert(1))
    waits = []
    for _ in range(3):
        start = clock()
        assert courier.pump(clock()).delivery is Delivery.TRANSIENT  # type: ignore[union-attr]
        waits.append(courier.due_in(clock()))
        clock.t = start + waits[-1]
    assert waits[0] < waits[1] < waits[2]
    assert courier.pump(clock()).delivery is Delivery.SENT  # type: ignore[union-attr]
    assert courier.snapshot()["state"] == "ok"


def test_dingtalk_throttle_code_waits_out_the_ten_minute_block(server: ChatServer, tmp_path: Path) -> None:
    clock = FakeClock()
    server.script.items.append(("code", 130101, "send too fast"))
    courier = Courier(DingTalkRobot(server.dingtalk_url, DING_SECRET, "lipsyncd", clock=clock), 15,
                      Store(tmp_path, None), clock=clock)
    courier.put(alert(1))
    courier.pump(clock())
    assert courier.due_in(clock()) >= 600  # DingTalk blocks the robot for 10 minutes after 20 a minute
    clock.t += 599
    assert courier.pump(clock()) is None and server.requests == 1  # nothing sent into the block
    clock.t += 2
    assert courier.pump(clock()).delivery is Delivery.SENT  # type: ignore[union-attr]
    assert courier.snapshot()["state"] == "ok"


def test_broken_channel_is_not_retried_forever_and_shows_clock_skew(server: ChatServer,
                                                                   tmp_path: Path) -> None:
    clock = FakeClock()
    skewed = lambda: clock() - 7200  # noqa: E731 - this host's clock runs two hours late
    courier = Courier(FeishuRobot(server.feishu_url, FEISHU_SECRET, clock=skewed), 60,
                      Store(tmp_path, None), clock=clock)
    courier.put(alert(1))
    assert courier.pump(clock()).delivery is Delivery.BROKEN  # type: ignore[union-attr]
    health = courier.snapshot()
    assert (health["state"], health["clock_skew"], health["ok"]) == ("broken", True, False)
    assert "19021" in health["last_error"]
    before = server.requests
    drain(courier, clock, 600)  # ten minutes: no new attempt against a broken robot
    assert server.requests == before
    clock.t += 3600
    courier.pump(clock())
    assert server.requests == before + 1  # an hourly probe


def test_rejected_message_is_dropped_and_kept_aside(server: ChatServer, tmp_path: Path) -> None:
    clock = FakeClock()
    server.script.items.append(("code", 44004, "empty content"))
    store = Store(tmp_path / "outbox", None)
    courier = Courier(WeComRobot(server.wecom_url, clock=clock), 15, store, clock=clock)
    courier.put(alert(1))
    assert courier.pump(clock()).delivery is Delivery.REJECTED  # type: ignore[union-attr]
    assert courier.snapshot()["pending"] == 0 and courier.snapshot()["rejected"] == 1
    assert len(list((tmp_path / "outbox" / "rejected" / "wecom").glob("*.json"))) == 1


def test_courier_thread_delivers_without_the_caller_waiting(server: ChatServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(courier_mod, "BACKOFF_FIRST_S", 0.2)
    server.script.items.append(("hang", 30))
    courier = Courier(DingTalkRobot(server.dingtalk_url, DING_SECRET, "lipsyncd", timeout_s=0.5), 15,
                      Store(tmp_path, None))
    courier.start()
    try:
        started = time.monotonic()
        courier.put(alert(1))
        assert time.monotonic() - started < 0.1  # put() never waits on HTTP
        deadline = time.monotonic() + 15
        while not server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "J001" in server.texts()[0]  # after the timeout and one short back-off
    finally:
        courier.stop()
