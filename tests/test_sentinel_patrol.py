"""The watchdog's pass over a real share folder, with a hand-written process manager and a real chat server.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chat_server import DING_SECRET, TOKEN, ChatServer

from daemon.core import atomic, heartbeat, progress
from daemon.core.config import Config, load_config
from daemon.core.heartbeat import Heartbeat
from daemon.sentinel.alerts import courier as courier_mod
from daemon.sentinel.alerts.channels import build_outbox
from daemon.sentinel.gpu import GpuLost, GpuReading, NvmlProbe
from daemon.sentinel.lane import Lane
from daemon.sentinel.managers.supervision import ProgramView
from daemon.sentinel.patrol import Patrol
from daemon.sentinel.role import Role


class FakeClock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class FakeManager:
    """Stands in for supervisord/systemd: records restart requests, answers a scripted view."""

    kind = "fake"

    def __init__(self) -> None:
        self.restarts: list[tuple[str, str, float]] = []
        self.views: dict[str, ProgramView | None] = {}

    def view(self, worker: str) -> ProgramView | None:
        return self.views.get(worker)

    def restart(self, worker: str, reason: str) -> bool:
        self.restarts.append((worker, reason, time.monotonic()))
        return True

    def poll(self) -> None:
        pass

    def workers(self) -> list[str]:
        return list(self.views)


def make_config(root: Path, extra: str = "", **watchdog: Any) -> Config:
    keys = {"gpu_check": False, "chunk_limit_s": 300, "failed_window_s": 60, "intake_stale_s": 86400,
            **watchdog}
    lines = [f"[share]\nroot = '{root}'", "[general]\nhost_name = 'h1'", "[watchdog]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    path = root.parent / "config.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    for state in ("inbox", "staging", "processing", "done", "failed", ".lipsyncd"):
        (root / state).mkdir(parents=True, exist_ok=True)
    return load_config(str(path), env={})


@pytest.fixture
def server(chat: ChatServer) -> ChatServer:
    return chat  # conftest's robot server


@pytest.fixture
def lane() -> Iterator[Lane]:
    lane = Lane()
    yield lane
    lane.close()


def webhook(server: ChatServer) -> str:
    return f"[alerts.webhook]\nurl = '{server.webhook_url}'\n"


def write_beat(root: Path, phase: str, progress_at: float, pid: int = 4242, job: str | None = "J1") -> None:
    heartbeat.write(root / ".lipsyncd", Heartbeat("h1", "gpu0", pid, 1.0, phase, job=job,
                                                  progress=progress.Progress(chunk=3, chunks=9),
                                                  progress_at=progress_at, written_at=progress_at))


def patrol_for(config: Config, manager: FakeManager, lane: Lane, clock: FakeClock,
               gpu: Any = None) -> Patrol:
    outbox = build_outbox(config, "h1", lane=None, clock=clock)
    return Patrol(config, manager, outbox, lane, "h1", "en", gpu, clock=clock)


def deliver(patrol: Patrol, clock: FakeClock) -> None:
    for c in patrol.outbox.couriers:
        while c.pump(clock()) is not None:
            pass


def test_stall_restarts_alerts_once_writes_history_and_reports_recovery(
        tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    root = tmp_path / "share"
    config = make_config(root, webhook(server))
    clock, manager = FakeClock(), FakeManager()
    job_dir = root / "processing" / "J1@h1.4242.ab12"
    job_dir.mkdir()
    (job_dir / "job.log").write_text("J1 chunk 3/9\n")
    os.utime(job_dir / "job.log", (clock() - 400, clock() - 400))
    write_beat(root, "working", clock() - 400)
    patrol = patrol_for(config, manager, lane, clock)
    patrol.step()
    deliver(patrol, clock)
    assert [r[0] for r in manager.restarts] == ["gpu0"]
    assert "working_stalled" in manager.restarts[0][1]
    [stalled] = server.received
    assert "gpu0" in stalled.body["title"] and "stalled" in stalled.body["title"]
    assert "J1" in stalled.body["text"] and "Restart requested" in stalled.body["text"]
    lane.call(lambda: None, 5)  # the history line is written on the share lane
    [line] = [json.loads(x) for x in (job_dir / "history.jsonl").read_text().splitlines()]
    assert (line["event"], line["worker"], line["quiet_s"], line["limit_s"]) == ("watchdog_restart", "gpu0", 400, 300)
    # while the new process loads, the old heartbeat is not judged again: no second restart or alert
    for _ in range(5):
        clock.t += 10
        patrol.step()
    deliver(patrol, clock)
    assert len(manager.restarts) == 1 and len(server.received) == 1
    write_beat(root, "loading", clock(), pid=5151, job=None)
    patrol.step()
    deliver(patrol, clock)
    assert len(server.received) == 2 and "recovered" in server.received[1].body["title"]
    assert patrol.snapshot(clock())["workers"]["h1--gpu0"]["health"] == "healthy"


def test_restart_loop_gives_up_with_one_human_alert(tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    root = tmp_path / "share"
    config = make_config(root, webhook(server), max_restarts=2, loading_limit_s=60)
    clock, manager = FakeClock(), FakeManager()
    write_beat(root, "working", clock() - 400)
    patrol = patrol_for(config, manager, lane, clock)
    for _ in range(12):  # the restarted worker never writes a heartbeat again
        patrol.step()
        clock.t += 30
    deliver(patrol, clock)
    assert len(manager.restarts) == 2
    titles = [r.body["title"] for r in server.received]
    assert sum("needs a human" in t for t in titles) == 1, titles
    assert sum("stalled" in t for t in titles) == 1
    assert patrol.snapshot(clock())["workers"]["h1--gpu0"]["gave_up"] is True


def test_chat_outage_never_delays_the_restart_and_the_alert_arrives_later(
        tmp_path: Path, server: ChatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(courier_mod, "BACKOFF_FIRST_S", 0.2)
    root = tmp_path / "share"
    config = make_config(root, webhook(server) + "[alerts]\ntimeout_s = 1\n", interval_s=0.1)
    manager = FakeManager()
    server.script.items += [("hang", 30)] * 20  # first the robot hangs, then it is down
    role = Role(config, env={}, manager=manager)
    role.start()
    try:
        role.step()  # a healthy pass first, so the hang starts during a pass of its own
        write_beat(root, "working", time.time() - 400)
        started = time.monotonic()
        role.step()
        assert time.monotonic() - started < 0.5  # the pass did not wait on HTTP
        assert [r[0] for r in manager.restarts] == ["gpu0"]
        time.sleep(1.5)  # the courier times out on the hanging robot
        server.down()
        time.sleep(0.5)
        role.step()
        assert server.received == []
        server.script.items.clear()
        server.up()
        deadline = time.monotonic() + 15
        while not server.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.received and "stalled" in server.received[0].body["title"]
    finally:
        role.close()


def test_hundred_failures_make_one_batched_alert_and_all_reach_the_local_log(
        tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    root = tmp_path / "share"
    config = make_config(root, webhook(server))
    clock, manager = FakeClock(), FakeManager()
    (root / "failed" / "OLD").mkdir()
    patrol = patrol_for(config, manager, lane, clock)
    patrol.step()  # old failures are not news
    for i in range(100):
        folder = root / "failed" / f"J{i:03d}"
        folder.mkdir()
        report = {"job": f"J{i:03d}", "batch": "lesson", "state": "failed", "code": "media_invalid",
                  "message": f"video {i} truncated"}
        atomic.write_json(folder / "report.json", report)
        if i % 10 == 9:
            clock.t += 5
            patrol.step()
    clock.t += 60
    patrol.step()
    deliver(patrol, clock)
    [batch] = server.received
    assert batch.body["title"].startswith("100 job(s) failed")
    journal = (root / ".lipsyncd" / "logs" / "h1" / "alerts.jsonl").read_text()  # this host's own journal
    assert all(f"J{i:03d} (lesson): media_invalid: video {i} truncated" in journal for i in range(100))
    assert "OLD" not in journal


def test_queue_disk_intake_and_share_conditions_alert_once_and_resolve(
        tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    root = tmp_path / "share"
    config = make_config(root, webhook(server), queue_wait_min=10, disk_free_min_gb=1e9,
                         intake_stale_s=60, share_unreachable_min=0)
    clock, manager = FakeClock(), FakeManager()
    job = root / "staging" / "Q1"
    job.mkdir()
    atomic.write_json(job / "job.json", {"id": "Q1", "accepted_at": clock() - 3600})
    intake = root / ".lipsyncd" / "roles" / "intake.json"
    intake.parent.mkdir(parents=True)
    atomic.write_json(intake, {"host": "h1", "pid": 77, "paused": True, "pause_reason": "disk"})
    os.utime(intake, (clock() - 600, clock() - 600))  # intake stopped writing ten minutes ago
    patrol = patrol_for(config, manager, lane, clock)
    for _ in range(3):
        patrol.step()
        clock.t += 5
    deliver(patrol, clock)
    seen = "\n".join(server.texts())
    for title in ("Jobs waiting too long on h1: Job Q1", "Disk almost full on h1",
                  "Intake not running on h1: intake.json was last written 600 s ago"):
        assert seen.count(title) == 1, seen  # once, although three passes saw each condition
    first = len(server.received)
    # the queued job is claimed; the share then disappears and comes back
    job.rename(root / "processing" / "Q1@h1.1.x")
    os.rename(root, tmp_path / "away")
    patrol.step()
    os.rename(tmp_path / "away", root)
    patrol.step()
    deliver(patrol, clock)
    seen = "\n".join(r.text for r in server.received[first:])
    assert "Resolved: Jobs waiting too long on h1" in seen
    assert "Share unreachable from h1" in seen and "Resolved: Share unreachable from h1" in seen


def test_a_hung_share_does_not_hang_the_pass(tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    root = tmp_path / "share"
    config = make_config(root, webhook(server), share_timeout_s=0.2, share_unreachable_min=0)
    clock, manager = FakeClock(), FakeManager()
    patrol = patrol_for(config, manager, lane, clock)
    release = threading.Event()
    patrol.surveyor.take = lambda: release.wait(30) and None  # type: ignore[method-assign, assignment, return-value]
    started = time.monotonic()
    assert patrol.step() is None and patrol.step() is None
    assert time.monotonic() - started < 1.5
    release.set()
    deliver(patrol, clock)
    assert [r.body["title"] for r in server.received] == ["Share unreachable from h1"]


def test_gpu_lost_and_memory_full_are_alerted(tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    class Probe:
        available = True
        answer: Any = [GpuReading(0, "GPU-1", 79 * 10**9, 80 * 10**9)]

        def read(self) -> list[GpuReading]:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer  # type: ignore[no-any-return]

    root = tmp_path / "share"
    config = make_config(root, webhook(server), gpu_check=True, gpu_memory_full_pct=95)
    clock, probe = FakeClock(), Probe()
    patrol = patrol_for(config, FakeManager(), lane, clock, gpu=probe)
    patrol.step()
    probe.answer = GpuLost("NVML error: GPU is lost")
    clock.t += 5
    patrol.step()
    deliver(patrol, clock)
    texts = [f"{r.body['title']} {r.body['text']}" for r in server.received]
    assert any("GPU 0 memory nearly full" in t and "99%" in t for t in texts)
    assert any("GPU problem" in t and "GPU is lost" in t for t in texts)


def test_without_nvml_the_gpu_check_is_simply_off() -> None:
    probe = NvmlProbe()  # this machine has no NVIDIA driver
    assert probe.available is False and probe.read() == []


def test_chinese_alerts_when_configured(tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    root = tmp_path / "share"
    config = make_config(root, webhook(server) + "[alerts]\nlanguage = 'zh'\n")
    clock, manager = FakeClock(), FakeManager()
    write_beat(root, "working", clock() - 400)
    outbox = build_outbox(config, "h1", lane=None, clock=clock)
    patrol = Patrol(config, manager, outbox, lane, "h1", "zh", None, clock=clock)
    patrol.step()
    deliver(patrol, clock)
    assert server.received[0].body["title"] == "h1 上的工作进程 gpu0 卡住了"


def test_secrets_from_file_and_env_never_reach_logs_or_status(
        tmp_path: Path, server: ChatServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f"[dingtalk]\nwebhook = '{server.dingtalk_url}'\nsecret = 'SECwrong-but-secret'\n")
    secrets.chmod(0o600)
    root = tmp_path / "share"
    make_config(root, f"[alerts]\nsecrets_file = '{secrets}'\ntimeout_s = 0.5\n"
                      "[alerts.dingtalk]\nkeyword = 'lipsyncd'\n")
    config = load_config(str(root.parent / "config.toml"),
                         env={"LIPSYNCD_ALERTS_DINGTALK_SECRET": DING_SECRET})
    assert config.alerts.dingtalk.secret == DING_SECRET  # env wins; the file fills only what is empty
    write_beat(root, "working", time.time() - 400)
    server.script.items += [("code", 310000, f"sign not match {TOKEN}"), ("hang", 30)]
    role = Role(config, env={}, manager=FakeManager())
    clock = FakeClock()
    for c in role.outbox.couriers:
        c.clock = clock
    role.step()
    for _ in range(3):
        for c in role.outbox.couriers:
            c.pump(clock())
        clock.t += 4000
    role.step()
    role.lane.call(lambda: None, 5)
    status_text = (root / ".lipsyncd" / "roles" / "watchdog.json").read_text()
    role.close()
    assert json.loads(status_text)["channels"]["dingtalk"]["sent"] >= 0
    for secret in (TOKEN, DING_SECRET, "SECwrong-but-secret", server.dingtalk_url):
        assert secret not in caplog.text and secret not in status_text


def test_status_file_and_textfile_metrics_are_written(tmp_path: Path, server: ChatServer) -> None:
    root = tmp_path / "share"
    prom = tmp_path / "textfile"
    prom.mkdir()
    config = make_config(root, webhook(server), textfile_dir=str(prom))
    write_beat(root, "working", time.time())
    role = Role(config, env={}, manager=FakeManager())
    try:
        role.step()
        role.lane.call(lambda: None, 5)
    finally:
        role.close()
    status = atomic.read_json(root / ".lipsyncd" / "roles" / "watchdog.json")
    assert status["workers"]["h1--gpu0"]["health"] == "healthy"
    assert status["channels"]["webhook"]["ok"] is True
    text = (prom / "lipsyncd_watchdog.prom").read_text()
    from prometheus_client.parser import text_string_to_metric_families

    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    assert got[("lipsyncd_worker_healthy", (("health", "healthy"), ("worker", "h1--gpu0")))] == 1
    assert got[("lipsyncd_share_reachable", ())] == 1
    assert [p.name for p in prom.iterdir()] == ["lipsyncd_watchdog.prom"]  # no temp file left to scrape
