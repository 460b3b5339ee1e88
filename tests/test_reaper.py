"""`lipsyncd up` kills a role together with the processes it started (psutil), and reaps them all."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
from conftest import wait_for

from daemon.core.lifecycle import Stopper
from daemon.launcher import ChildSpec, Launcher

# a stand-in role that starts a long-running helper (as a worker starts ffmpeg) and then hangs
ROLE = ("import subprocess, sys, time; helper = subprocess.Popen(['sleep', '300']); "
        "open(sys.argv[1], 'w').write(str(helper.pid)); time.sleep(300)")


def test_a_restart_request_kills_the_role_and_the_helpers_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "helper.pid"
    launcher = Launcher([ChildSpec("worker-gpu0", [sys.executable, "-c", ROLE, str(pidfile)])], tmp_path / "control",
                        Stopper())
    launcher.control.mkdir()
    try:
        launcher.step(time.monotonic())
        wait_for(lambda: pidfile.is_file() and pidfile.read_text().isdigit(), 60, "the role's helper")
        helper = psutil.Process(int(pidfile.read_text()))
        first = launcher.children[0].proc
        assert first is not None and helper.is_running()
        (launcher.control / "restart-worker-gpu0").write_text("stalled")
        launcher.step(time.monotonic())
        assert first.returncode is not None  # the role itself was reaped
        assert not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE
        assert launcher.children[0].proc is not None and launcher.children[0].proc is not first  # started again
    finally:
        launcher._kill_all()
    assert all(c.proc is None or c.proc.poll() is not None for c in launcher.children)
