"""The watchdog's node_exporter textfile over a real share: the appliance's numbers, parsed by the official
Prometheus client parser, written by rename with no timestamps."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from chat_server import ChatServer
from prometheus_client.parser import text_string_to_metric_families

from daemon.core import atomic, heartbeat, progress, report
from daemon.core.config import load_config
from daemon.sentinel import metrics
from daemon.sentinel.alerts import wording
from daemon.sentinel.alerts.alert import Severity
from daemon.sentinel.role import Role


def promtool_accepts(path: Path) -> None:
    """`promtool check metrics` (Debian package prometheus): exit 0 and no lint complaint."""
    done = subprocess.run(["promtool", "check", "metrics"], input=path.read_bytes(), capture_output=True,
                          timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), \
        (done.stdout + done.stderr).decode()


class Manager:
    """The process-manager seam: no restarts needed here."""

    kind = "fake"

    def view(self, worker: str) -> None:
        return None

    def restart(self, worker: str, reason: str) -> bool:
        return True

    def poll(self) -> None:
        pass

    def workers(self) -> list[str]:
        return []


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.timestamp is None  # node_exporter rejects files with client-side timestamps
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def staged(root: Path, job_id: str, accepted_at: float) -> None:
    (root / "staging" / job_id).mkdir(parents=True)
    atomic.write_json(root / "staging" / job_id / "job.json", {"id": job_id, "accepted_at": accepted_at})


def finished(root: Path, state: str, job_id: str, render_s: float) -> None:
    path = root / state / job_id
    path.mkdir(parents=True)
    if state == "done":
        report.write_success(path, job_id=job_id, output="o.mp4", inputs={}, attempts=1,
                             timings={"render_s": render_s})
    else:
        report.write_failure(path, job_id=job_id, code="media_invalid", params={"name": "n", "detail": "d"},
                             language="en", inputs={}, attempts=1)


def test_textfile_has_jobs_disk_queue_age_render_time_heartbeats_and_alert_counts(tmp_path: Path) -> None:
    root = tmp_path / "share"
    for folder in ("inbox", "staging", "processing", "done", "failed", ".lipsyncd/roles"):
        (root / folder).mkdir(parents=True)
    prom = tmp_path / "textfile"
    prom.mkdir()
    chat = ChatServer().start()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[share]\nroot = "{root}"\n[general]\nhost_name = "h1"\n'
                   f'[watchdog]\ngpu_check = false\ntextfile_dir = "{prom}"\nintake_stale_s = 86400\n'
                   f'[alerts.webhook]\nurl = "{chat.webhook_url}"\n')
    now = time.time()
    staged(root, "old-job", now - 900)
    staged(root, "new-job", now - 10)
    finished(root, "done", "before-start", 500.0)  # finished before the watchdog came: not counted as new
    (root / "inbox" / "waiting.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
    heartbeat.write(root / ".lipsyncd", heartbeat.Heartbeat(
        host="h1", worker="gpu0", pid=1, pid_start=0, phase="working", job="x",
        progress=progress.Progress(fps=31.5),
        progress_at=now - 4, written_at=now - 2))
    heartbeat.write(root / ".lipsyncd", heartbeat.Heartbeat(host="other", worker="gpu0", pid=1, pid_start=0,
                                                            phase="idle"))
    atomic.write_json(root / ".lipsyncd" / "roles" / "intake.json", {"paused": True, "pause_reason": "disk: low"})
    role = Role(load_config(str(cfg), env={}), env={}, manager=Manager())
    try:
        role.start()
        role.step()
        finished(root, "done", "fresh-1", 12.5)
        finished(root, "done", "fresh-2", 7.5)
        finished(root, "failed", "fresh-3", 0)
        time.sleep(0.01)
        role.step()
        # the failed-jobs alert waits for failed_window_s (60 s): send one of our own to count
        role.outbox.put(wording.alert("resolved", "test", Severity.RESOLVED, "en", time.time(), title="t",
                                      minutes="0"))
        deadline = time.monotonic() + 10
        while not chat.texts() and time.monotonic() < deadline:
            time.sleep(0.05)
        role.step()
    finally:
        role.close()
        chat.down()
    text = (prom / "lipsyncd_watchdog.prom").read_text()
    got = samples(text)
    assert [p.name for p in prom.iterdir()] == ["lipsyncd_watchdog.prom"]  # the temp name was renamed away
    jobs = {state: got[("lipsyncd_jobs", (("state", state),))]
            for state in ("inbox", "staging", "processing", "done", "failed")}
    assert jobs == {"inbox": 1, "staging": 2, "processing": 0, "done": 3, "failed": 1}
    assert 880 < got[("lipsyncd_oldest_queued_age_seconds", ())] < 1000
    assert got[("lipsyncd_share_free_bytes", ())] > 0
    assert got[("lipsyncd_intake_paused", ())] == 1
    assert got[("lipsyncd_job_render_seconds_sum", ())] == 20.0  # the two fresh jobs, not the old one
    assert got[("lipsyncd_job_render_seconds_count", ())] == 2
    assert got[("lipsyncd_jobs_finished_total", (("state", "done"),))] == 2
    assert got[("lipsyncd_jobs_finished_total", (("state", "failed"),))] == 1
    assert got[("lipsyncd_worker_frames_per_second", (("worker", "h1--gpu0"),))] == 31.5
    assert 1 <= got[("lipsyncd_worker_heartbeat_age_seconds", (("worker", "h1--gpu0"),))] < 30
    assert 3 <= got[("lipsyncd_worker_progress_age_seconds", (("worker", "h1--gpu0"),))] < 30
    assert ("lipsyncd_worker_heartbeat_age_seconds", (("worker", "other--gpu0"),)) not in got  # its own host's
    assert got[("lipsyncd_worker_restarts_total", (("worker", "h1--gpu0"),))] == 0
    assert got[("lipsyncd_alerts_sent_total", (("channel", "webhook"),))] >= 1
    assert not [k for k in got if k[0] == "lipsyncd_alerts_failed_total"]  # no failure, no code: no series
    promtool_accepts(prom / "lipsyncd_watchdog.prom")
    status = json.loads((root / ".lipsyncd" / "roles" / "watchdog.json").read_text())
    assert status["share"]["jobs"]["done"] == 3


def _busy_snapshot() -> dict[str, object]:
    """A pass with every family populated, values that used to break the file (inf, quotes, newlines)."""
    return {"written_at": 1_700_000_000.5, "share_ok": True, "outbox_pending": 3,
            "workers": {'h1--gpu"0': {"health": "stalled", "restarts": 2, "restarts_total": 5},
                        "h1--gpu1": {"health": "healthy", "restarts": 0, "restarts_total": 0}},
            "channels": {"dingtalk": {"sent": 4, "failed": 3, "failures": {"130101": 2, "http_503": 1}},
                         "wecom": {"sent": 1, "failed": 0, "failures": {}}},
            "share": {"jobs": {"staging": 2, "done": 7}, "oldest_queued_age_s": float("inf"),
                      "disk_free_bytes": 12_345_678_901, "intake_paused": False, "finished": {"done": 7},
                      "render_s_sum": 70.25, "render_s_count": 7,
                      "beats": {"h1--gpu1": {"fps": float("inf"), "heartbeat_age_s": 1.5, "progress_age_s": 2.0,
                                             "rss_bytes": 1_500_000_000},
                                "h1--gpu2": {"fps": None, "heartbeat_age_s": 3.0, "progress_age_s": 3.0,
                                             "rss_bytes": None}}}}


def test_textfile_passes_promtool_and_the_openmetrics_parser_without_name_clashes(tmp_path: Path) -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_text
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_parse

    snap = _busy_snapshot()
    metrics.write_textfile(tmp_path, snap)
    path = tmp_path / "lipsyncd_watchdog.prom"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    promtool_accepts(path)
    families = {f.name: f for f in openmetrics_parse(openmetrics_text(metrics.registry(snap)).decode())}
    assert families["lipsyncd_worker_restarts"].type == "counter"  # the counter owns the name ...
    assert families["lipsyncd_worker_recent_restarts"].type == "gauge"  # ... the windowed gauge has its own
    assert "lipsyncd_alert_send_failures" not in families  # one family for failures, by channel and code
    failed = {(s.labels["channel"], s.labels["code"]): s.value for s in families["lipsyncd_alerts_failed"].samples}
    assert failed == {("dingtalk", "130101"): 2, ("dingtalk", "http_503"): 1}
    got = samples(path.read_text())
    assert got[("lipsyncd_oldest_queued_age_seconds", ())] == float("inf")  # +Inf, not NaN
    assert got[("lipsyncd_worker_frames_per_second", (("worker", "h1--gpu1"),))] == float("inf")
    assert ("lipsyncd_worker_frames_per_second", (("worker", "h1--gpu2"),)) not in got  # unknown: left out
    assert got[("lipsyncd_worker_recent_restarts", (("worker", 'h1--gpu"0'),))] == 2
    assert got[("lipsyncd_worker_restarts_total", (("worker", 'h1--gpu"0'),))] == 5
    assert got[("lipsyncd_worker_resident_memory_bytes", (("worker", "h1--gpu1"),))] == 1_500_000_000
    assert "+Inf" in path.read_text() and "NaN" not in path.read_text()


def test_a_metric_name_that_clashes_is_refused_by_the_registry_not_written(tmp_path: Path) -> None:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Clash(metrics.Snapshot):
        def collect(self):  # type: ignore[no-untyped-def]
            yield GaugeMetricFamily("lipsyncd_worker_restarts", "gauge", value=1)
            yield CounterMetricFamily("lipsyncd_worker_restarts", "counter", value=1)

    with pytest.raises(ValueError, match="Duplicated timeseries.*lipsyncd_worker_restarts"):
        metrics.registry(_busy_snapshot(), Clash)
    with pytest.raises(ValueError):
        metrics.write_textfile(tmp_path, _busy_snapshot(), Clash)
    assert list(tmp_path.iterdir()) == []  # nothing half-made is left for node_exporter


HOG = "import sys, time; block = bytearray(160 * 1024 * 1024); sys.stdout.write('ready\\n'); sys.stdout.flush(); " \
      "time.sleep(120)"


def test_worker_memory_counts_its_children_and_refuses_a_reused_pid() -> None:
    import os
    import sys

    from daemon.core import lease
    from daemon.sentinel.memory import resident_bytes

    me, start = os.getpid(), lease.process_start(os.getpid())
    assert start
    alone = resident_bytes(me, start)
    child = subprocess.Popen([sys.executable, "-c", HOG], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"  # its 160 MB are touched
        with_child = resident_bytes(me, start)
        assert alone and with_child and with_child - alone > 150 * 1024 * 1024
    finally:
        child.kill()
        child.wait(timeout=30)
    assert resident_bytes(me, start + 1) is None  # same pid, another start time: not our worker
    assert resident_bytes(me, 0) is None  # a heartbeat without a start time proves nothing


def test_the_textfile_and_watchdog_json_carry_this_hosts_worker_memory(tmp_path: Path) -> None:
    import os

    from daemon.core import lease

    root = tmp_path / "share"
    for folder in ("inbox", "staging", "processing", "done", "failed", ".lipsyncd/roles"):
        (root / folder).mkdir(parents=True)
    prom = tmp_path / "textfile"
    prom.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[share]\nroot = "{root}"\n[general]\nhost_name = "h1"\n'
                   f'[watchdog]\ngpu_check = false\ntextfile_dir = "{prom}"\nintake_stale_s = 86400\n')
    now = time.time()
    heartbeat.write(root / ".lipsyncd", heartbeat.Heartbeat(  # this test process plays the worker
        host="h1", worker="gpu0", pid=os.getpid(), pid_start=lease.process_start(os.getpid()) or 0.0,
        phase="idle", progress_at=now, written_at=now))
    role = Role(load_config(str(cfg), env={}), env={}, manager=Manager())
    try:
        role.start()
        role.step()
        role.lane.call(lambda: None, 5)
    finally:
        role.close()
    got = samples((prom / "lipsyncd_watchdog.prom").read_text())
    rss = got[("lipsyncd_worker_resident_memory_bytes", (("worker", "h1--gpu0"),))]
    assert rss > 10 * 1024 * 1024
    status = json.loads((root / ".lipsyncd" / "roles" / "watchdog.json").read_text())
    assert status["share"]["beats"]["h1--gpu0"]["rss_bytes"] > 10 * 1024 * 1024
