"""The process managers the watchdog restarts workers through: supervisord, systemd, `lipsyncd up`, or none.

One module per manager behind the `ProcessManager` seam (supervision.py); `pick_manager` chooses one
from the config and from how the watchdog itself was started, `hand_start` says how a human starts a
worker again under it. Adding a manager: its module here, a branch in each of the two functions below.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from daemon.core.config import Config
from daemon.core.share import Share
from daemon.sentinel.managers.supervision import NoManager, ProcessManager
from daemon.sentinel.managers.supervisord import Supervisord
from daemon.sentinel.managers.systemctl import Systemd
from daemon.sentinel.managers.upcontrol import UpControl

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


def hand_start(manager: ProcessManager, worker: str) -> str:
    """How an operator starts `worker` again once the manager has stopped trying (for alerts)."""
    return {"supervisord": f"supervisorctl start {getattr(manager, 'template', '')}",
            "systemd": "systemctl reset-failed + start the worker unit",
            "up": f"restart lipsyncd up or touch .lipsyncd/control/restart-worker-{worker}",
            }.get(manager.kind, "start the worker again")
