"""A real worker under `lipsyncd up` is SIGSTOPped mid-job: the watchdog alerts a chat robot and gets it
restarted through up's child supervision; the job then completes exactly once. With the chat server down
during the stall, the restart still happens on time and the alert arrives once the server is back."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from chat_server import DING_SECRET, ChatServer
from conftest import Roles, drop_job, entries, env_for, rendering, wait_for

CHUNK_LIMIT_S = 3.0


def _env(root: Path, chat: ChatServer) -> dict[str, str]:
    return env_for(root, LIPSYNCD_WORKER_GPUS="0", LIPSYNCD_WATCHDOG_INTERVAL_S="0.5",
                   LIPSYNCD_WATCHDOG_CHUNK_LIMIT_S=str(CHUNK_LIMIT_S), LIPSYNCD_WATCHDOG_GPU_CHECK="false",
                   LIPSYNCD_WATCHDOG_DISK_FREE_MIN_GB="0", LIPSYNCD_ALERTS_DINGTALK_WEBHOOK=chat.dingtalk_url,
                   LIPSYNCD_ALERTS_DINGTALK_SECRET=DING_SECRET, LIPSYNCD_ALERTS_DINGTALK_KEYWORD="lipsyncd",
                   LIPSYNCD_ALERTS_TIMEOUT_S="1")


def _worker_pid(root: Path) -> int | None:
    try:
        data = json.loads((root / ".lipsyncd" / "control" / "up.json").read_text())
    except (OSError, ValueError):
        return None
    child = data["children"].get("worker-gpu0", {})
    return child.get("pid") if child.get("state") == "running" else None


def _rendering_pid(root: Path) -> int | None:
    """The running worker's pid once its own heartbeat says it rendered a batch of the job (not earlier:
    on a loaded machine the watchdog may rightly restart a worker that is slow to start)."""
    pid = _worker_pid(root)
    for path in (root / ".lipsyncd" / "workers").glob("*--gpu0.json"):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if pid is not None and beat.get("pid") == pid and beat.get("step") == "render":
            return pid
    return None


def _stall_mid_job(root: Path, media: Path) -> tuple[int, float]:
    drop_job(root, "talk", media / "talk.wav", media / "talk.mp4")
    wait_for(lambda: any(rendering(j) for j in (root / "processing").glob("*@*")) and _rendering_pid(root), 90,
             "the worker to render")
    pid = _rendering_pid(root)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    return pid, time.monotonic()


def _check_job_done_once(root: Path) -> None:
    wait_for(lambda: len(entries(root / "done")) == 1, 120, "the job to finish after the restart")
    [job] = entries(root / "done")
    folder = root / "done" / job
    assert [p.name for p in folder.iterdir() if p.suffix == ".mp4"] == ["talk.mp4"]
    events = [json.loads(line)["event"] for line in (folder / "history.jsonl").read_text().splitlines()]
    assert "watchdog_restart" in events
    assert entries(root / "failed") == [] and entries(root / "processing") == []


def test_sigstopped_worker_is_alerted_and_restarted_and_the_job_completes(root: Path, media_dir: Path,
                                                                         roles: Roles, chat: ChatServer) -> None:
    roles.start("up", env=_env(root, chat))
    wait_for(lambda: _worker_pid(root) is not None, 30, "up to start the worker")
    stopped, at = _stall_mid_job(root, media_dir)
    wait_for(lambda: _worker_pid(root) not in (None, stopped), 30, "a restarted worker")
    took = time.monotonic() - at
    assert took < CHUNK_LIMIT_S + 5, f"restart took {took:.1f} s for a {CHUNK_LIMIT_S} s limit"
    wait_for(lambda: any("gpu0" in t for t in chat.texts("dingtalk")), 30, "the stall alert in DingTalk")
    _check_job_done_once(root)


@pytest.mark.slow
def test_chat_down_during_a_stall_still_restarts_on_time_and_alerts_later(root: Path, media_dir: Path,
                                                                         roles: Roles, chat: ChatServer) -> None:
    roles.start("up", env=_env(root, chat))
    wait_for(lambda: _worker_pid(root) is not None, 30, "up to start the worker")
    chat.down()
    stopped, at = _stall_mid_job(root, media_dir)
    wait_for(lambda: _worker_pid(root) not in (None, stopped), 30, "a restarted worker despite the chat outage")
    assert time.monotonic() - at < CHUNK_LIMIT_S + 5
    assert chat.texts("dingtalk") == []
    chat.up()
    wait_for(lambda: any("gpu0" in t for t in chat.texts("dingtalk")), 60, "the alert once chat is back")
    _check_job_done_once(root)
