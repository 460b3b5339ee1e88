"""The watchdog role: build the patrol, outbox and process-manager adapter, then loop until stopped.

`run(config, args)` is what `lipsyncd watchdog` calls (through daemon/cli.py); `main(argv)` is a second
entry point with its own `--config`/`--root` parser, which tests/test_sentinel_process.py launches.
Exit 78 on a configuration error (no restart loop).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path

from daemon.core.config import Config, load_config
from daemon.core.errors import EXIT_CONFIG, ConfigError
from daemon.core.lifecycle import follow_parent
from daemon.core.notify import Notifier
from daemon.core.share import Share
from daemon.sentinel import metrics, status, wording
from daemon.sentinel.alert import Severity
from daemon.sentinel.channels import build_outbox, language
from daemon.sentinel.gpu import NvmlProbe
from daemon.sentinel.lane import Lane
from daemon.sentinel.patrol import Patrol
from daemon.sentinel.supervision import NoManager, ProcessManager
from daemon.sentinel.supervisord import Supervisord
from daemon.sentinel.systemctl import Systemd
from daemon.sentinel.upcontrol import UpControl

log = logging.getLogger(__name__)


def pick_manager(config: Config, env: Mapping[str, str]) -> ProcessManager:
    """The configured process manager; "auto" looks at how we ourselves were started."""
    cfg, share = config.watchdog, Share(config.root)
    kind = cfg.process_manager
    if kind == "auto":
        if env.get("LIPSYNCD_UP") or (share.control / "up.json").exists():
            kind = "up"
        elif env.get("SUPERVISOR_ENABLED"):
            kind = "supervisord"
        elif env.get("INVOCATION_ID"):  # set by systemd for every service it starts
            kind = "systemd"
        else:
            kind = "none"
    if kind == "up":
        return UpControl(share.internal)
    if kind == "supervisord":
        # the supervisord that started us says where it listens, also when process_manager names it
        url = env.get("SUPERVISOR_SERVER_URL") or cfg.supervisord_url
        return Supervisord(url, cfg.supervisord_program, cfg.manager_timeout_s)
    if kind == "systemd":
        return Systemd(cfg.systemctl, cfg.systemd_unit, cfg.manager_timeout_s)
    log.warning("no process manager (watchdog.process_manager = none): stalls are alerted, not restarted")
    return NoManager()


class Role:
    """The pieces of a running watchdog, so tests can drive `step()` one pass at a time."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None,
                 manager: ProcessManager | None = None, gpu: NvmlProbe | None = None) -> None:
        env = os.environ if env is None else env
        self.config = config
        self.host = config.general.host_name or socket.gethostname()
        self.lane = Lane()
        self.outbox = build_outbox(config, self.host, self.lane)
        self.manager = manager or pick_manager(config, env)
        self.patrol = Patrol(config, self.manager, self.outbox, self.lane, self.host, language(config), gpu)
        # the previous status write: while the share hangs, writes must not pile up behind it
        self._status_write: Future[None] | None = None

    def step(self) -> bool:
        survey = self.patrol.step()
        snapshot = self.patrol.snapshot(self.patrol.clock())
        if self._status_write is None or self._status_write.done():
            internal = Share(self.config.root).internal
            self._status_write = self.lane.submit(lambda: status.write_json(internal, snapshot))
        if self.config.watchdog.textfile_dir:
            try:
                metrics.write_textfile(Path(self.config.watchdog.textfile_dir), snapshot)
            except OSError as exc:
                log.warning("cannot write metrics to %s: %s", self.config.watchdog.textfile_dir, exc)
        return survey is not None

    def start(self) -> None:
        self.lane.submit(self.outbox.recover)  # reads the outbox folder: off the loop
        self.outbox.start()

    def close(self) -> None:
        self.outbox.stop()
        self.lane.close()


def run(config: Config, args: argparse.Namespace | None = None, stop: threading.Event | None = None,
        config_error: str = "") -> int:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: stop.set())
        follow_parent()  # under `lipsyncd up`: stop when up dies
    notifier = Notifier()
    gpu = NvmlProbe() if config.watchdog.gpu_check else None
    role = Role(config, gpu=gpu)
    role.start()
    if config_error:  # started on the fallback config (sentinel/fallback.py): say so, once
        role.outbox.put(wording.alert("config_error", "config", Severity.CRITICAL, language(config), time.time(),
                                      host=role.host, detail=config_error))
    notifier.ready(f"watching {config.root} via {role.manager.kind}")
    log.info("watchdog on %s watching %s (process manager: %s, every %.1f s)", role.host, config.root,
             role.manager.kind, config.watchdog.interval_s)
    try:
        while not stop.is_set():
            role.step()
            # the pass finished (the share answered or its timeout was handled): the loop is alive
            notifier.alive(role.patrol.summary())
            stop.wait(config.watchdog.interval_s)
    finally:
        notifier.stopping()
        role.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lipsyncd watchdog")
    parser.add_argument("--config")
    parser.add_argument("--root")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.root)
    except ConfigError as exc:
        print(f"lipsyncd watchdog: {exc}", flush=True)
        return EXIT_CONFIG
    logging.basicConfig(level=config.general.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(config, args)
