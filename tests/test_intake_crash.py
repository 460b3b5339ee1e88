"""SIGKILL of a real intake process at every step of accepting a batch; the next start completes it.

The killer is planted in the child process itself (it SIGKILLs itself on the N-th file move or folder
move), so each crash point is hit exactly, not by timing luck.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, Roles, entries, env_for, wait_for

KILLER = r"""
import os, signal, sys
where, n = sys.argv[1], int(sys.argv[2])
from daemon.intake import assembly
calls = {"op": 0, "move": 0, "plan": 0}
def trap(kind, fn):
    def wrapped(*a, **k):
        if kind == where and calls[kind] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[kind] += 1
        return fn(*a, **k)
    return wrapped
assembly.Assembler._apply = trap("op", assembly.Assembler._apply)
assembly.state.move = trap("move", assembly.state.move)
real_write = assembly._write_json_ascii
def write_json(path, *a, **k):
    if path.name == assembly.PLAN:
        return trap("plan", real_write)(path, *a, **k)
    return real_write(path, *a, **k)
assembly._write_json_ascii = write_json
from daemon.cli import main
sys.exit(main(["intake"]))
"""

# the batch below: 1 audio shared by 3 videos + the ticket = 7 ops (links then renames), 3 folder moves
POINTS = [("plan", 0)] + [("op", k) for k in range(7)] + [("move", m) for m in range(3)]


def _drop_batch(inbox: Path, media: Path) -> dict[str, str]:
    shutil.copy(media / "a.wav", inbox / "speech.wav")
    for name in ("p1.mp4", "p2.mp4", "p3.mp4"):
        shutil.copy(media / "v.mp4", inbox / name)
    (inbox / "batch.toml").write_text('audio = "speech.wav"\nvideos = ["p1.mp4", "p2.mp4", "p3.mp4"]\n')
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inbox.iterdir()}


@pytest.mark.parametrize("where,n", POINTS, ids=[f"{w}{n}" for w, n in POINTS])
def test_kill_during_accept_then_restart_completes_it(root: Path, media_dir: Path, roles: Roles,
                                                        where: str, n: int) -> None:
    env = env_for(root)
    (root / "inbox").mkdir()
    digests = _drop_batch(root / "inbox", media_dir)
    crashed = subprocess.run([sys.executable, "-c", KILLER, where, str(n)], cwd=REPO, env=env,
                             capture_output=True, timeout=60)
    assert crashed.returncode == -9, crashed.stderr.decode()[-2000:]
    intake = roles.start("intake", env=env)
    wait_for(lambda: len(entries(root / "staging")) == 3, 30, "all three batch jobs in staging/")
    intake.terminate()
    assert intake.wait(timeout=20) == 0
    assert entries(root / "inbox") == [], "something was stranded in the inbox"
    assert entries(root / "failed") == []
    assert list((root / ".lipsyncd" / "intake").iterdir()) == [], "a transaction was left behind"
    videos = set()
    for job in entries(root / "staging"):
        inputs = root / "staging" / job / "inputs"
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs.iterdir()}
        assert set(files) >= {"speech.wav", "batch.toml"} and len(files) == 3
        for name, digest in files.items():
            assert digests[name] == digest, f"{job}: {name} changed"
        videos |= {name for name in files if name.endswith(".mp4")}
        assert (root / "staging" / job / "job.json").is_file()
    assert videos == {"p1.mp4", "p2.mp4", "p3.mp4"}
