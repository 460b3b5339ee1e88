"""The faults of a run, on a seeded schedule, each recorded with when it struck and when things recovered.

Worker and intake kills are SIGKILL of the one process (as the OOM killer does; its ffmpeg child then
dies of a broken pipe). A stall is SIGSTOP of a worker in the middle of a long job. A full share is a
ballast file written while a long job encodes. Chat faults: down, hanging, answering rate-limit codes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from chat_server import ChatServer

from faults.appliance import CHUNK_LIMIT_S, QUICK_S, WORKERS, Appliance
from faults.disk import SmallDisk
from faults.producer import Producer

KINDS = ("kill_worker", "kill_intake", "stop_worker", "disk_full", "chat_down", "chat_hang",
         "chat_ratelimit", "burst")


@dataclass
class Fault:
    kind: str
    at: float  # wall clock when it struck (0: it could not be injected)
    detail: dict[str, Any] = field(default_factory=dict)
    recovered_at: float | None = None

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered_at is None or not self.at else round(self.recovered_at - self.at, 2)


def schedule(rng: random.Random, duration_s: float, per_kind: dict[str, int]) -> list[tuple[float, str]]:
    """Fault kinds at seeded moments within the run: shuffled, spread, at least a few seconds apart."""
    kinds = [k for k, n in per_kind.items() for _ in range(n)]
    rng.shuffle(kinds)
    if not kinds:
        return []
    slot = duration_s / len(kinds)
    return [(i * slot + rng.uniform(0.1, 0.6) * slot, kind) for i, kind in enumerate(kinds)]


class Injector:
    def __init__(self, app: Appliance, disk: SmallDisk, chat: ChatServer, producer: Producer,
                 rng: random.Random, burst: int, disk_hold_s: tuple[float, float] = (2.0, 5.0)) -> None:
        self.app, self.disk, self.chat, self.producer, self.rng = app, disk, chat, producer, rng
        self.burst_size = burst
        # `up` gives up on a worker after 5 quick failures (~12 s of a full share): see RELIABILITY.md
        self.disk_hold_s = disk_hold_s
        self.faults: list[Fault] = []
        self.burst_names: list[str] = []
        self._timers: list[threading.Timer] = []

    def run(self, plan: list[tuple[float, str]], started: float, until: float) -> None:
        for offset, kind in plan:
            time.sleep(max(0.0, started + offset - time.monotonic()))
            self.faults.append(getattr(self, kind)())
        time.sleep(max(0.0, until - time.monotonic()))

    def finish(self) -> None:
        """Undo what is still in effect (a chat outage) before the audit."""
        for timer in self._timers:
            timer.cancel()
        for fault in self.faults:
            if fault.kind == "chat_down" and "up_at" not in fault.detail:
                self._chat_back(fault)
        self.disk.free()

    # --- processes ----------------------------------------------------------------------------------
    def kill_worker(self) -> Fault:
        return self._kill(self.rng.choice(WORKERS))

    def kill_intake(self) -> Fault:
        return self._kill("intake")

    def _kill(self, name: str) -> Fault:
        pid = self._settled_pid(name)
        if pid is None:
            return Fault(f"kill_{name.split('-')[0]}", 0, {"child": name, "skipped": "not running"})
        os.kill(pid, signal.SIGKILL)
        fault = Fault(f"kill_{name.split('-')[0]}", time.time(), {"child": name, "pid": pid})
        new, fault.recovered_at = self.app.wait_new_pid(name, pid, 90)
        fault.detail["new_pid"] = new
        if new is None:
            fault.recovered_at = None
        return fault

    def _settled_pid(self, name: str, timeout: float = 30.0) -> int | None:
        """The child's pid once it has run longer than `up`'s quick-failure window."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.app.pid(name)
            if pid is not None and self.app.age(pid) > QUICK_S + 0.5:
                return pid
            time.sleep(0.2)
        return None

    def stop_worker(self) -> Fault:
        job = self.producer.drop("long", priority=10).name
        found = self._worker_on(job, 60)
        if found is None:
            return Fault("stop_worker", 0, {"job": job, "skipped": "no worker took the long job in 60 s"})
        name, pid, beat_job = found
        os.kill(pid, signal.SIGSTOP)
        fault = Fault("stop_worker", time.time(), {"child": name, "pid": pid, "job": beat_job,
                                                    "limit_s": CHUNK_LIMIT_S})
        new, fault.recovered_at = self.app.wait_new_pid(name, pid, CHUNK_LIMIT_S + 60)
        fault.detail["new_pid"] = new
        if new is None:
            fault.recovered_at = None
            os.kill(pid, signal.SIGCONT)  # the watchdog failed: let the run go on and the audit say so
        return fault

    def _worker_on(self, stem: str, timeout: float) -> tuple[str, int, str] | None:
        """The worker child rendering the job whose id starts with `stem`, once it shows progress."""
        deadline = time.monotonic() + timeout
        beats = self.app.root / ".lipsyncd" / "workers"
        while time.monotonic() < deadline:
            for path in beats.glob("*.json"):
                try:
                    beat = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                job = str(beat.get("job") or "")
                name = f"worker-{beat.get('worker')}"
                if job.startswith(f"{stem}-") and beat.get("phase") == "working" and beat.get("frames_done"):
                    if self.app.pid(name) == beat.get("pid"):
                        return name, int(beat["pid"]), job
            time.sleep(0.1)
        return None

    # --- the share ----------------------------------------------------------------------------------
    def disk_full(self) -> Fault:
        if not self.disk.can_fill:
            return Fault("disk_full", 0, {"skipped": "the share is not a filesystem of its own (needs root)"})
        job = self.producer.drop("long", priority=10).name
        encoding = self._encoding(job, 60)
        hold = round(self.rng.uniform(*self.disk_hold_s), 1)
        free_before = self.disk.free_bytes()
        ballast = self.disk.fill()
        fault = Fault("disk_full", time.time(), {"job": job, "mid_encode": encoding, "ballast_mb":
                                                 round(ballast / 1e6, 1), "free_before_mb":
                                                 round(free_before / 1e6, 1), "hold_s": hold})
        time.sleep(hold)
        self.disk.free()
        fault.detail["freed_at"] = time.time()
        return fault  # recovery (the next finished job) is read from the reports by the audit

    def _encoding(self, stem: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        processing = self.app.root / "processing"
        while time.monotonic() < deadline:
            for folder in processing.glob(f"{stem}-*@*"):
                # the result's temporary file, or the chunked pipeline's segments under work/
                try:
                    if any((".part." in p.name or "work" in p.relative_to(folder).parts[:-1])
                           and p.is_file() and p.stat().st_size > 0 for p in folder.rglob("*")):
                        return True
                except OSError:
                    continue
            time.sleep(0.05)
        return False

    # --- chat ---------------------------------------------------------------------------------------
    def chat_down(self) -> Fault:
        hold = round(self.rng.uniform(5.0, 15.0), 1)
        self.chat.down()
        fault = Fault("chat_down", time.time(), {"hold_s": hold})
        timer = threading.Timer(hold, self._chat_back, args=(fault,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return fault

    def _chat_back(self, fault: Fault) -> None:
        if not self.chat.listening:
            self.chat.up()
        fault.detail["up_at"] = time.time()

    def chat_hang(self) -> Fault:
        # the server accepts connections and never answers: every request runs into the client's timeout
        hold = round(self.rng.uniform(5.0, 15.0), 1)
        self.chat.during(hold, ("hang", 5.0))
        return Fault("chat_hang", time.time(), {"hold_s": hold, "hang_s": 5.0})

    def chat_ratelimit(self) -> Fault:
        # every request answered with a rate limit: WeCom's 45009 holds the channel back 60 s
        # (robots/poster.py BACKOFF_CODES) on top of the exponential backoff; DingTalk's own 130101 blocks a robot for
        # 10 minutes (tested in test_alerts_vendors), longer than a short run can wait out, so DingTalk
        # answers HTTP 429 here
        hold = round(self.rng.uniform(5.0, 15.0), 1)
        self.chat.during(hold, ("http", 429), "dingtalk")
        self.chat.during(hold, ("code", 45009, "api freq out of limit"), "wecom")
        return Fault("chat_ratelimit", time.time(), {"hold_s": hold})

    # --- load ---------------------------------------------------------------------------------------
    def burst(self) -> Fault:
        at = time.time()
        names = [self.producer.drop("good").name for _ in range(self.burst_size)]
        self.burst_names = names
        return Fault("burst", at, {"tickets": len(names), "dropped_in_s": round(time.time() - at, 1)})
