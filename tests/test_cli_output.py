"""The command's stdout belongs to its reader: a closed pipe ends the command quietly, a full device is
reported as such (never as "the share is full", never as a bug)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import busy_share
from conftest import REPO, env_for


def _run(root: Path, stdout: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=REPO, env=env_for(root), stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def test_status_json_into_a_pipe_closed_early_exits_quietly_like_a_tool_killed_by_sigpipe(root: Path) -> None:
    busy_share.build(root)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head`) has gone before the first write: every write is EPIPE
    try:
        done = _run(root, write_end, "status", "--json")
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""  # no traceback, no "bug", not even "Exception ignored"


def test_help_into_a_closed_pipe_exits_quietly(root: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = _run(root, write_end, "submit", "--help")
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "bug" not in done.stderr


def test_status_into_a_full_device_says_stdout_is_full_not_the_share(root: Path) -> None:
    busy_share.build(root)
    for args in (("status",), ("status", "--json")):
        with open("/dev/full", "w") as full:
            done = _run(root, full.fileno(), *args)
        assert done.returncode == 74, done.stderr  # EX_IOERR
        assert "cannot write to standard output: No space left on device" in done.stderr
        assert "share is full" not in done.stderr and "bug" not in done.stderr
        assert done.stderr.count("\n") == 1
