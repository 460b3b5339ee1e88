"""`lipsyncd status` (table and --json) and `lipsyncd submit --wait`, run as real commands: through pipes and
inside a real terminal (tmux), against real intake and worker processes with the copy engine."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import busy_share
import pytest
from conftest import REPO, Roles, entries, env_for

BAR = re.compile(r"\[(#*)(\.*)\]\s+(\d+)%")


def cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=REPO, env=env_for(root, COLUMNS="120", **env),
                          capture_output=True, text=True, timeout=120)


def test_status_table_reads_at_a_glance_and_json_has_the_same_picture(root: Path) -> None:
    ids = busy_share.build(root)
    table = cli(root, "status")
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "intake: accepting drops" in text
    assert "queued 2 (oldest waiting 10 min)   running 1   done 1   failed 1   inbox 0" in text
    running = next(line for line in text.splitlines() if ids["running"] in line and "fps" in line)
    assert "gpuhost/gpu0" in running and "38%" in running and "3/8" in running and "ETA 3 min" in running
    queue = text.split("QUEUED (2)")[1].split("WORKERS")[0]
    assert queue.index(ids["queued_old"]) < queue.index(ids["queued_new"])
    assert "has no picture" in text.split("RECENTLY FAILED")[1]
    assert "welcome.mp4" in text.split("RECENTLY DONE")[1]
    assert "feishu: broken" in text
    assert all(len(line) <= 120 for line in text.splitlines())

    snap = json.loads(cli(root, "status", "--json").stdout)
    assert snap["counts"]["staging"] == 2 and snap["running"][0]["job"] == ids["running"]
    assert snap["failed"][0]["message"].startswith("The file <img")  # raw in JSON; escaping is the page's job


def test_submit_wait_through_a_pipe_prints_each_change_and_exits_0_when_done(root: Path, media_dir: Path,
                                                                             roles: Roles) -> None:
    env = env_for(root)
    roles.intake_and_worker(root, env)
    done = cli(root, "submit", "--wait", "--name", "greeting", str(media_dir / "a.wav"), str(media_dir / "v.mp4"))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0].startswith("submitted greeting-") and out[-1].startswith("done: ")
    result = Path(out[-1].removeprefix("done: "))
    assert result.is_file() and result.parent.parent == root / "done"
    assert len(out) == len(set(out))  # a new line only when something changed


def test_submit_wait_exits_1_and_prints_the_reason_when_the_job_fails(root: Path, media_dir: Path,
                                                                      roles: Roles) -> None:
    env = env_for(root)
    roles.intake_and_worker(root, env)
    failed = cli(root, "submit", "--wait", str(media_dir / "a.wav"), str(media_dir / "a.wav"))  # no picture
    assert failed.returncode == 1
    assert "What went wrong" in failed.stderr and "contains only sound" in failed.stderr


@pytest.mark.slow
def test_submit_wait_draws_a_live_progress_bar_in_a_real_terminal(root: Path, media_dir: Path, roles: Roles,
                                                                  tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed (apt-get install -y tmux)")
    env = env_for(root)
    roles.intake_and_worker(root, env)
    script = tmp_path / "run.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.startswith(("LIPSYNCD_", "PATH")))
    script.write_text(f"{exports}cd {shlex.quote(str(REPO))}\n"
                      f"{shlex.quote(sys.executable)} -m daemon submit --wait --name lecture "
                      f"{media_dir / 'talk.wav'} {media_dir / 'talk.mp4'}\necho EXIT=$?\nsleep 120\n")
    sock = f"lipsyncd-test-{os.getpid()}"  # our own tmux server: never touches anyone else's sessions
    tmux = ["tmux", "-L", sock]
    subprocess.run([*tmux, "new-session", "-d", "-s", "w", "-x", "100", "-y", "8", f"bash {script}"], check=True,
                   env={**os.environ, "TERM": "xterm-256color"})
    screens: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pane = subprocess.run([*tmux, "capture-pane", "-p", "-t", "w"], capture_output=True, text=True).stdout
            if not screens or pane != screens[-1]:
                screens.append(pane)
            if "EXIT=" in pane:
                break
            time.sleep(0.05)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    final = screens[-1]
    assert "EXIT=0" in final and "done: " in final, final
    percents = [int(m.group(3)) for s in screens for m in BAR.finditer(s)]
    assert any(0 < p < 100 for p in percents), screens  # seen mid-render, not only at the end
    assert percents == sorted(percents) and len(set(percents)) >= 2  # it moved forward, redrawn in place
    bar_rows = [line for line in final.splitlines() if BAR.search(line)]
    assert len(bar_rows) <= 1  # one line redrawn with \r, not a scroll of bars
    assert len(entries(root / "done")) == 1
