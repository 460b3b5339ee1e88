"""The watchdog role: build the patrol, outbox and process-manager adapter, then loop until stopped.

`run(config, args)` is what `lipsyncd watchdog` calls (through daemon/cli.py), on `Stopper` and
`run_until_stopped` like every role. A config that does not load starts it on the fallback config instead
(sentinel/fallback.py), so a broken config.toml is alerted rather than looped on.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path

from daemon.core.config import Config
from daemon.core.lifecycle import Stopper, run_until_stopped
from daemon.core.notify import Notifier
from daemon.core.share import Share
from daemon.sentinel import metrics, status
from daemon.sentinel.alerts import wording
from daemon.sentinel.alerts.alert import Severity
from daemon.sentinel.alerts.channels import build_outbox, language
from daemon.sentinel.gpu import NvmlProbe
from daemon.sentinel.lane import Lane
from daemon.sentinel.managers import pick_manager
from daemon.sentinel.managers.supervision import ProcessManager
from daemon.sentinel.patrol import Patrol

log = logging.getLogger(__name__)


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


def run(config: Config, args: argparse.Namespace | None = None, *, config_error: str = "") -> int:
    """`lipsyncd watchdog`: one pass every `watchdog.interval_s` until stopped.

    `config_error` is set when cli started us on the fallback config (sentinel/fallback.py): said once.
    """
    stop = Stopper()
    stop.install()  # under `lipsyncd up` it also follows up: stop when up dies
    notifier = Notifier()
    role = Role(config, gpu=NvmlProbe() if config.watchdog.gpu_check else None)
    role.start()
    if config_error:
        role.outbox.put(wording.alert("config_error", "config", Severity.CRITICAL, language(config), time.time(),
                                      host=role.host, detail=config_error))
    notifier.ready(f"watching {config.root} via {role.manager.kind}")
    log.info("watchdog on %s watching %s (process manager: %s, every %.1f s)", role.host, config.root,
             role.manager.kind, config.watchdog.interval_s)

    def step() -> bool:
        role.step()
        # the pass finished (the share answered or its timeout was handled): the loop is alive
        notifier.alive(role.patrol.summary())
        return False  # a pass is never followed at once by another: the next one is interval_s away

    try:
        run_until_stopped(step, config.watchdog.interval_s, stop)
    finally:
        notifier.stopping()
        role.close()
    return 0
