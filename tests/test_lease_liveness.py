"""Liveness of a lease's owner on this host, read from /proc: it must agree with the watchdog's psutil."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from daemon.core import lease


def test_start_time_agrees_with_psutil_for_this_process_and_init() -> None:
    for pid in (os.getpid(), 1):
        started = lease.process_start(pid)
        assert started is not None
        assert abs(started - psutil.Process(pid).create_time()) <= lease.START_TOLERANCE_S
        assert lease.alive(pid, started)


def test_a_command_name_with_spaces_and_a_parenthesis_still_parses(tmp_path: Path) -> None:
    odd = tmp_path / "a b) c"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", odd)
    child = subprocess.Popen([str(odd), "30"])
    try:
        wait_for(lambda: psutil.Process(child.pid).name() == "a b) c", 20, "the child to exec")
        started = lease.process_start(child.pid)
        assert started is not None
        assert abs(started - psutil.Process(child.pid).create_time()) <= lease.START_TOLERANCE_S
        assert lease.alive(child.pid, started)
    finally:
        child.kill()
        child.wait()


def test_a_reused_pid_a_zombie_and_a_reaped_child_are_not_alive() -> None:
    assert not lease.alive(os.getpid(), (lease.process_start(os.getpid()) or 0.0) - 5.0), "a reused pid"
    child = subprocess.Popen(["sleep", "0"])
    try:
        wait_for(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE, 20, "the child to exit")
        started = lease.process_start(child.pid)
        assert started is not None
        assert not lease.alive(child.pid, started), "a zombie does no work"
    finally:
        child.wait()
    assert not lease.alive(child.pid, started), "reaped: gone, or its pid now names a later process"


@pytest.mark.parametrize("pid", [0, -1])
def test_no_process_has_a_pid_below_one(pid: int) -> None:
    assert lease.process_start(pid) is None and not lease.alive(pid, 0.0)
