"""The systemd and `lipsyncd up` adapters: state parsing, give-up detection and restart requests.

systemd is replaced by a stand-in `systemctl` script (the process-manager seam); `up` by its control files.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from test_sentinel_patrol import make_config

from daemon.core import atomic
from daemon.sentinel.managers import pick_manager
from daemon.sentinel.managers.supervision import NoManager, ProgramState
from daemon.sentinel.managers.supervisord import Supervisord
from daemon.sentinel.managers.systemctl import Systemd
from daemon.sentinel.managers.upcontrol import UpControl

FAKE_SYSTEMCTL = """#!{python}
import json, sys
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "show":
    sys.stdout.write(open({show!r}).read())
elif sys.argv[1] == "list-units":
    sys.stdout.write("lipsyncd-worker@0.service loaded active running lipsyncd GPU worker 0\\n"
                     "lipsyncd-worker@1.service loaded failed failed lipsyncd GPU worker 1\\n")
"""


def fake_systemctl(tmp_path: Path, show: str) -> tuple[Systemd, Path]:
    log, answer = tmp_path / "calls.jsonl", tmp_path / "show.txt"
    answer.write_text(show)
    script = tmp_path / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(python=sys.executable, log=str(log), show=str(answer)))
    script.chmod(0o755)
    return Systemd(str(script), "lipsyncd-worker@{n}.service", timeout_s=10), log


def test_systemd_running_worker_and_restart_without_blocking(tmp_path: Path) -> None:
    mono_us = int(time.monotonic() * 1e6) - 30_000_000  # started 30 s ago
    systemd, log = fake_systemctl(tmp_path, "LoadState=loaded\nActiveState=active\nSubState=running\n"
                                  f"Result=success\nNRestarts=2\nMainPID=4321\n"
                                  f"ExecMainStartTimestampMonotonic={mono_us}\nExecMainStatus=0\n")
    view = systemd.view("gpu0")
    assert view is not None
    assert (view.name, view.state, view.pid, view.restarts, view.gave_up) == (
        "lipsyncd-worker@0.service", ProgramState.RUNNING, 4321, 2, False)
    assert view.started_at is not None and abs(time.time() - 30 - view.started_at) < 2
    assert systemd.restart("gpu0", "stalled")
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[-1] == ["restart", "--no-block", "lipsyncd-worker@0.service"]
    assert systemd.workers() == ["gpu0", "gpu1"]


def test_systemd_start_limit_hit_means_gave_up(tmp_path: Path) -> None:
    systemd, _ = fake_systemctl(tmp_path, "LoadState=loaded\nActiveState=failed\nSubState=failed\n"
                                "Result=start-limit-hit\nNRestarts=5\nMainPID=0\n")
    view = systemd.view("gpu1")
    assert view is not None and view.gave_up and view.state is ProgramState.FATAL
    assert "start-limit-hit" in view.detail


def test_systemd_config_error_exit_78_means_gave_up(tmp_path: Path) -> None:
    systemd, _ = fake_systemctl(tmp_path, "LoadState=loaded\nActiveState=failed\nSubState=failed\n"
                                "Result=exit-code\nNRestarts=0\nMainPID=0\nExecMainStatus=78\n")
    view = systemd.view("gpu0")
    assert view is not None and view.gave_up


def test_systemd_unknown_unit_and_missing_systemctl(tmp_path: Path) -> None:
    systemd, _ = fake_systemctl(tmp_path, "LoadState=not-found\nActiveState=inactive\n")
    assert systemd.view("gpu7") is None
    absent = Systemd(str(tmp_path / "nope"), "lipsyncd-worker@{n}.service")
    view = absent.view("gpu0")
    assert view is not None and view.state is ProgramState.UNKNOWN
    assert absent.restart("gpu0", "x") is False


def test_up_control_files(tmp_path: Path) -> None:
    internal = tmp_path / ".lipsyncd"
    (internal / "control").mkdir(parents=True)
    atomic.write_json(internal / "control" / "up.json", {"children": {
        "intake": {"pid": 10, "state": "running", "starts": 1, "last_exit": None, "since": 100.0},
        "worker-gpu0": {"pid": 11, "state": "running", "starts": 3, "last_exit": 1, "since": 200.0},
        "worker-gpu1": {"pid": None, "state": "fatal", "starts": 5, "last_exit": 1, "since": 300.0}}})
    up = UpControl(internal)
    assert up.workers() == ["gpu0", "gpu1"]
    gpu0 = up.view("gpu0")
    assert gpu0 is not None and (gpu0.state, gpu0.pid, gpu0.started_at, gpu0.restarts) == (
        ProgramState.RUNNING, 11, 200.0, 3)
    gpu1 = up.view("gpu1")
    assert gpu1 is not None and gpu1.gave_up
    assert up.restart("gpu0", "watchdog: working_stalled")
    request = internal / "control" / "restart-worker-gpu0"
    assert request.read_text() == "watchdog: working_stalled\n"
    assert not [p for p in (internal / "control").iterdir() if p.name.endswith(".tmp")]


def test_auto_detection_follows_how_the_watchdog_was_started(tmp_path: Path) -> None:
    config = make_config(tmp_path / "share", process_manager="auto")
    assert isinstance(pick_manager(config, {}), NoManager)
    assert isinstance(pick_manager(config, {"INVOCATION_ID": "abc"}), Systemd)
    sup = pick_manager(config, {"SUPERVISOR_ENABLED": "1", "SUPERVISOR_SERVER_URL": "unix:///tmp/x.sock"})
    assert isinstance(sup, Supervisord) and sup.url == "unix:///tmp/x.sock"
    assert isinstance(pick_manager(config, {"LIPSYNCD_UP": "1", "INVOCATION_ID": "abc"}), UpControl)
