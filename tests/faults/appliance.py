"""The appliance under test, started as operators start it: `python -m daemon up`, configured by env.

Two copy-engine workers (`LIPSYNCD_WORKER_GPUS=0,1`), a watchdog with small stall limits, DingTalk and
WeCom robots pointed at a loopback ChatServer. Children are found through `.lipsyncd/control/up.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from chat_server import DING_SECRET, ChatServer
from conftest import REPO, env_for

CHUNK_LIMIT_S = 4.0
WORKERS = ("worker-gpu0", "worker-gpu1")
# `up` counts a child that dies within QUICK_S of its start as a quick failure (5 in a row: FATAL, like
# supervisord's startretries); the runner kills only children older than this, so a kill is a crash,
# not a crash loop
QUICK_S = 10.0


def appliance_env(root: Path, chat: ChatServer, max_attempts: int = 12) -> dict[str, str]:
    # the kills are ours, not the jobs' fault: allow more attempts than one job can suffer
    return env_for(
        root,
        LIPSYNCD_WORKER_GPUS="0,1",
        LIPSYNCD_WORKER_MAX_ATTEMPTS=str(max_attempts),
        LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN="0.1",  # a ticket naming a missing file fails after 6 s
        LIPSYNCD_WATCHDOG_INTERVAL_S="0.5",
        LIPSYNCD_WATCHDOG_CHUNK_LIMIT_S=str(CHUNK_LIMIT_S),
        LIPSYNCD_WATCHDOG_IDLE_LIMIT_S="10",
        LIPSYNCD_WATCHDOG_LOADING_LIMIT_S="40",
        LIPSYNCD_WATCHDOG_FINALIZING_LIMIT_S="30",
        LIPSYNCD_WATCHDOG_MAX_RESTARTS="100",
        LIPSYNCD_WATCHDOG_GPU_CHECK="false",
        LIPSYNCD_WATCHDOG_DISK_FREE_MIN_GB="0.005",  # 5 MB: a full share raises the disk alert
        # the disk guard sized for the small test share: a full share pauses intake, freed space resumes it
        LIPSYNCD_INTAKE_PAUSE_BELOW_FREE_GB="0.005",
        LIPSYNCD_INTAKE_RESUME_ABOVE_FREE_GB="0.01",
        LIPSYNCD_WATCHDOG_FAILED_WINDOW_S="5",
        LIPSYNCD_ALERTS_TIMEOUT_S="1",
        LIPSYNCD_ALERTS_DINGTALK_WEBHOOK=chat.dingtalk_url,
        LIPSYNCD_ALERTS_DINGTALK_SECRET=DING_SECRET,
        LIPSYNCD_ALERTS_DINGTALK_KEYWORD="lipsyncd",
        LIPSYNCD_ALERTS_WECOM_WEBHOOK=chat.wecom_url,
    )


class Appliance:
    def __init__(self, root: Path, env: dict[str, str], log_path: Path) -> None:
        self.root = root
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def control(self) -> Path:
        return self.root / ".lipsyncd" / "control"

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "up"], cwd=REPO, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.pid(name) for name in ("intake", *WORKERS, "watchdog")):
                return
            time.sleep(0.2)
        raise RuntimeError(f"lipsyncd up did not start its children in {timeout:.0f} s; see {self.log_path}")

    def children(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads((self.control / "up.json").read_text())
        except (OSError, ValueError):
            return {}
        children = data.get("children", {})
        return children if isinstance(children, dict) else {}

    def pid(self, name: str) -> int | None:
        child = self.children().get(name, {})
        pid = child.get("pid")
        return pid if child.get("state") == "running" and isinstance(pid, int) else None

    def age(self, pid: int) -> float:
        try:
            return time.time() - psutil.Process(pid).create_time()
        except psutil.Error:
            return 0.0

    def wait_new_pid(self, name: str, old: int, timeout: float) -> tuple[int | None, float]:
        """Wait until `name` runs under another pid; returns (pid, when) or (None, when we gave up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid(name)
            if pid is not None and pid != old:
                return pid, time.time()
            time.sleep(0.05)
        return None, time.time()

    def states(self) -> dict[str, str]:
        return {name: str(c.get("state")) for name, c in self.children().items()}

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        """Ctrl-C as an operator would; SIGKILL the whole group if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)  # a stopped child would never see the SIGINT
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers: orphaned ffmpeg children of killed workers
        self.proc.wait()
        return self.proc.returncode
