"""`lipsyncd up`: intake, the workers and the watchdog as child processes, for demos and single boxes.

It restarts a child that dies (with back-off; after `MAX_QUICK_FAILS` start failures in a row the
child is FATAL, like supervisord; a start failure is a death before the child reported READY=1 on
its own notify socket, see readiness.py — a worker that was ready and worked is never one),
restarts a child on request (a `control/restart-<name>` file, which is how the watchdog asks us),
publishes the children's states in `control/up.json`, and on Ctrl-C or SIGTERM stops them all:
SIGTERM first, SIGKILL after the grace period or on a second signal.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon import reaper
from daemon.core import atomic
from daemon.core.lifecycle import PARENT_PID_ENV, StopNow, Stopper
from daemon.readiness import ReadyChannel

log = logging.getLogger(__name__)

MAX_QUICK_FAILS = 5
STOP_GRACE_S = 30.0


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    state: str = "stopped"
    starts: int = 0
    quick_fails: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    last_exit: int | None = None
    ready: bool = False  # the running process said READY=1
    channel: ReadyChannel | None = None


class Launcher:
    def __init__(self, specs: Sequence[ChildSpec], control: Path, stop: Stopper) -> None:
        self.children = [_Child(s) for s in specs]
        self.control = control
        self.stop = stop

    def run(self) -> int:
        self.control.mkdir(parents=True, exist_ok=True)
        try:
            while not self.stop.is_set():
                self.step(time.monotonic())
                self.stop.wait(0.5)
        except StopNow:
            self._kill_all()
            return 1
        return self.shutdown()

    def step(self, now: float) -> None:
        for child in self.children:
            self._listen(child)
            self._reap(child, now)
            self._honour_restart_request(child)
            if child.proc is None and child.state != "fatal" and now >= child.next_start:
                self._start(child, now)
        self._publish()

    def _start(self, child: _Child, now: float) -> None:
        # LIPSYNCD_UP tells the watchdog child that restarts go through our control files
        env = dict(os.environ, LIPSYNCD_UP="1", **child.spec.env)
        env[PARENT_PID_ENV] = str(os.getpid())  # the child asks for a SIGTERM when we die
        env["NOTIFY_SOCKET"] = self._fresh_channel(child).env_value
        # its own session and group: a terminal's Ctrl-C (SIGINT to the foreground group) reaches us alone,
        # and we send the one SIGTERM; in our group the child would count that SIGTERM as a second signal
        child.proc = subprocess.Popen(child.spec.argv, env=env, start_new_session=True)
        child.starts += 1
        child.started_at = now
        child.state = "running"
        log.info("started %s (pid %d)", child.spec.name, child.proc.pid)

    def _reap(self, child: _Child, now: float) -> None:
        if child.proc is None or child.proc.poll() is None:
            return
        code = child.proc.returncode
        self._listen(child)  # a READY=1 sent just before it died still counts
        child.proc, child.last_exit = None, code
        quick = not child.ready  # died before it was up: a start failure, however long that took
        child.quick_fails = child.quick_fails + 1 if quick else 0
        if code == 78:
            child.state = "fatal"
            log.error("%s stopped with a configuration error (exit 78): not restarting", child.spec.name)
        elif child.quick_fails >= MAX_QUICK_FAILS:
            child.state = "fatal"
            log.error("%s failed %d times in a row before it was ready: giving up", child.spec.name,
                      child.quick_fails)
        else:
            child.state = "backoff"
            child.next_start = now + min(30.0, float(child.quick_fails))
            log.warning("%s exited with %s; restarting", child.spec.name, code)

    # --- readiness (crash loops are judged by it) --------------------------------------------------
    @staticmethod
    def _fresh_channel(child: _Child) -> ReadyChannel:
        """The child's notify socket, emptied of anything an earlier process of it sent."""
        if child.channel is None:
            child.channel = ReadyChannel(child.spec.name)
        child.channel.heard_ready()
        child.ready = False
        return child.channel

    @staticmethod
    def _listen(child: _Child) -> None:
        if child.proc is not None and child.channel is not None and child.channel.heard_ready():
            if not child.ready:
                log.info("%s is ready (pid %d)", child.spec.name, child.proc.pid)
            child.ready = True

    def _honour_restart_request(self, child: _Child) -> None:
        request = self.control / f"restart-{child.spec.name}"
        try:
            reason = request.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            return
        request.unlink(missing_ok=True)
        log.warning("restarting %s on request: %s", child.spec.name, reason or "no reason given")
        child.quick_fails = 0
        if child.state == "fatal":
            child.state = "stopped"
        if child.proc is not None:
            # a stalled child may be SIGSTOPped: SIGKILL works on stopped processes, SIGTERM would wait
            reaper.kill_tree(child.proc)
            child.proc = None
            child.last_exit = -signal.SIGKILL
        child.next_start = 0.0

    def _publish(self) -> None:
        children = {c.spec.name: {"pid": c.proc.pid if c.proc else None, "state": c.state, "starts": c.starts,
                                  "last_exit": c.last_exit, "ready": c.ready} for c in self.children}
        try:
            atomic.write_json(self.control / "up.json", {"pid": os.getpid(), "written_at": time.time(),
                                                         "children": children}, fsync=False)
        except OSError as exc:
            log.debug("could not write up.json: %s", exc)

    def shutdown(self) -> int:
        live = [c for c in self.children if c.proc is not None]
        for child in live:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            for child in live:
                assert child.proc is not None
                try:
                    child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0f s: killing it", child.spec.name, STOP_GRACE_S)
                    reaper.kill_tree(child.proc)
        except StopNow:
            self._kill_all()
            return 1
        for child in self.children:
            child.state, child.proc = "stopped", None
        self._publish()
        log.info("all children stopped")
        return 0

    def _kill_all(self) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                reaper.kill_tree(child.proc)


def role_argv(role: str, config_path: str | None, root: str, extra: Sequence[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "daemon", "--root", root]
    if config_path:
        argv += ["--config", config_path]
    return [*argv, role, *extra]
