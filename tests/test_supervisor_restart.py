"""A real supervisord (started by the test) restarting a stalled stand-in worker through XML-RPC, and
giving up on one that exits at once (FATAL → one "needs a human" alert).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from chat_server import ChatServer
from test_sentinel_patrol import make_config, webhook

from daemon.core import heartbeat
from daemon.sentinel.managers.supervision import ProgramState
from daemon.sentinel.managers.supervisord import Supervisord
from daemon.sentinel.role import Role

REPO = Path(__file__).resolve().parents[1]
SUPERVISORD = Path(sys.executable).parent / "supervisord"
PROGRAM = "lipsyncd-worker:lipsyncd-worker-{n}"

# a stand-in worker: real heartbeats through daemon.core.heartbeat, progress every 0.1 s, until stopped
STAND_IN = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from daemon.core import heartbeat, progress
    internal = Path(sys.argv[1]) / ".lipsyncd"
    chunk = 0
    while True:
        chunk += 1
        heartbeat.write(internal, heartbeat.Heartbeat("h1", "gpu0", os.getpid(), 0.0, "working", job="J1",
                                                      progress=progress.Progress(chunk=chunk, chunks=10**6)))
        time.sleep(0.1)
""")

CONF = """
[unix_http_server]
file={sock}

[inet_http_server]
port=127.0.0.1:{port}

[supervisord]
nodaemon=true
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:lipsyncd-worker]
command={command}
process_name=lipsyncd-worker-%(process_num)s
numprocs=1
directory={repo}
environment=PYTHONPATH="{repo}"
startsecs=1
startretries=1
stopwaitsecs=1
stopasgroup=true
autorestart=true
redirect_stderr=true
stdout_logfile={dir}/worker-%(process_num)s.log
"""

pytestmark = pytest.mark.skipif(not SUPERVISORD.exists(), reason="supervisord not installed in the venv")


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """start(command) → unix socket URL of a fresh supervisord running `command` as lipsyncd-worker-0."""
    short = Path(tempfile.mkdtemp(prefix="sv", dir="/tmp"))  # AF_UNIX paths must stay under 108 bytes
    procs: list[subprocess.Popen[bytes]] = []

    def start(command: str) -> str:
        sock = short / "supervisor.sock"
        conf = tmp_path / "supervisord.conf"
        conf.write_text(CONF.format(sock=sock, dir=tmp_path, repo=REPO, command=command, port=free_port()))
        procs.append(subprocess.Popen([str(SUPERVISORD), "-c", str(conf)], cwd=tmp_path))
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), (tmp_path / "supervisord.log").read_text()
        return f"unix://{sock}"

    yield start
    for proc in procs:
        proc.terminate()  # supervisord stops its children (stopasgroup) before it exits
        proc.wait(15)
    shutil.rmtree(short, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_url(tmp_path: Path) -> str:
    port = re.search(r"port=127.0.0.1:(\d+)", (tmp_path / "supervisord.conf").read_text())
    assert port
    return f"http://127.0.0.1:{port.group(1)}"


def wait_for(predicate: Callable[[], object], timeout: float,
             step: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


@pytest.mark.slow  # ~5 s: a real stop (stopwaitsecs) and start (startsecs)
def test_stalled_worker_is_restarted_through_supervisord_and_beats_again(
        tmp_path: Path, supervisord: Callable[[str], str]) -> None:
    root = tmp_path / "share"
    server = ChatServer().start()
    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    try:
        url = supervisord(f"{sys.executable} {script} {root}")
        config = make_config(root, webhook(server), process_manager="supervisord", supervisord_url=url,
                             supervisord_program=PROGRAM, chunk_limit_s=1.0, loading_limit_s=10,
                             interval_s=0.1)
        role = Role(config, env={})
        role.start()
        adapter = Supervisord(url, PROGRAM)
        health = lambda: role.patrol.snapshot(0)["workers"].get("h1--gpu0", {}).get("health")  # noqa: E731
        running = lambda: (v := adapter.view("gpu0")) is not None and v.state is ProgramState.RUNNING  # noqa: E731
        wait_for(lambda: health() == "healthy" and running(), 10, role.step)
        old = adapter.view("gpu0")
        assert old is not None and old.state is ProgramState.RUNNING and old.pid
        os.kill(old.pid, signal.SIGSTOP)  # the worker hangs mid-job: no more progress, process still there
        stopped_at = time.monotonic()
        wait_for(lambda: role.patrol.workers.watches["gpu0"].restart_at is not None, 5, role.step)
        detected_after = time.monotonic() - stopped_at
        assert detected_after < 1.0 + 1.0  # the chunk limit plus scheduling slack
        # supervisord TERMs, then KILLs the stopped process after stopwaitsecs, and we start it again
        wait_for(lambda: health() == "healthy" and running() and adapter.view("gpu0").pid != old.pid,  # type: ignore[union-attr]
                 20, role.step)
        new = adapter.view("gpu0")
        assert new is not None and new.state is ProgramState.RUNNING
        beat = heartbeat.read(root / ".lipsyncd" / "workers" / "h1--gpu0.json")
        assert beat is not None and beat.pid == new.pid and beat.progress_at > time.time() - 2
        assert not psutil.pid_exists(old.pid) or psutil.Process(old.pid).status() == psutil.STATUS_ZOMBIE
        wait_for(lambda: len(server.received) >= 2, 10)
        titles = [r.body["title"] for r in server.received]
        assert titles == ["Worker gpu0 on h1 stalled", "Worker gpu0 on h1 recovered"], titles
        assert "Restart requested through supervisord" in server.received[0].body["text"]
        role.close()
    finally:
        server.down()


def test_worker_exiting_at_once_ends_fatal_with_one_gave_up_alert(
        tmp_path: Path, supervisord: Callable[[str], str]) -> None:
    root = tmp_path / "share"
    server = ChatServer().start()
    try:
        url = supervisord(f"{sys.executable} -c 'import sys; sys.exit(3)'")
        config = make_config(root, webhook(server), process_manager="supervisord", supervisord_url=url,
                             supervisord_program=PROGRAM, interval_s=0.1)
        role = Role(config, env={})
        role.start()
        adapter = Supervisord(url, PROGRAM)
        wait_for(lambda: (v := adapter.view("gpu0")) is not None and v.state is ProgramState.FATAL, 20,
                 role.step)
        for _ in range(20):  # many more passes: still one alert
            role.step()
            time.sleep(0.05)
        wait_for(lambda: server.received, 10)
        time.sleep(0.3)
        titles = [r.body["title"] for r in server.received]
        assert titles == ["Worker gpu0 on h1 is down for good: needs a human"], titles
        assert "FATAL" in server.received[0].body["text"] or "quickly" in server.received[0].body["text"]
        assert role.patrol.snapshot(0)["workers"]["h1--gpu0"]["gave_up"] is True
        over_http = Supervisord(http_url(tmp_path), PROGRAM).view("gpu0")  # the same, over TCP
        assert over_http is not None and over_http.gave_up and over_http.state is ProgramState.FATAL
        role.close()
    finally:
        server.down()
