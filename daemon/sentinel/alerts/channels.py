"""Which robots to alert, built from `[alerts]` plus an optional secrets file, and the outbox around them.

Secrets precedence: environment (`LIPSYNCD_ALERTS_DINGTALK_SECRET`, ...) and config.toml are merged by
the config loader; the secrets file then fills only keys still empty. Values are never logged.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

from daemon.core import logs
from daemon.core.config import AlertsConfig, Config, read_toml
from daemon.core.errors import ConfigError
from daemon.core.share import Share
from daemon.sentinel.alerts.courier import Courier
from daemon.sentinel.alerts.outbox import Outbox, Store
from daemon.sentinel.alerts.robots import VENDORS
from daemon.sentinel.lane import Lane

log = logging.getLogger(__name__)

# what a secrets file may fill: each robot's table's secret settings (webhook, secret, url)
SECRET_KEYS = {name: tuple(f.name for f in fields(getattr(AlertsConfig(), name)) if f.metadata.get("secret"))
               for name in VENDORS}


def with_secrets(alerts: AlertsConfig) -> AlertsConfig:
    """`alerts` with empty secret keys filled from `alerts.secrets_file` (if one is named)."""
    if not alerts.secrets_file:
        return alerts
    path = Path(alerts.secrets_file)
    data = read_toml(path)
    try:
        if path.stat().st_mode & (stat.S_IROTH | stat.S_IWOTH):
            log.warning("secrets file %s is readable by every user; chmod 600 it", path)
    except OSError:
        pass
    for table, values in data.items():
        if table not in SECRET_KEYS or not isinstance(values, dict):
            raise ConfigError(f"{path}: [{table}]: unknown table; allowed: {', '.join(SECRET_KEYS)}")
        section = getattr(alerts, table)
        changes = {}
        for key, value in values.items():
            if key not in SECRET_KEYS[table] or not isinstance(value, str):
                raise ConfigError(f"{path}: {table}.{key}: unknown key or not text; allowed: "
                                  f"{', '.join(SECRET_KEYS[table])}")
            if not getattr(section, key):
                changes[key] = value
        alerts = replace(alerts, **{table: replace(section, **changes)})
    return alerts


def build_outbox(config: Config, host: str, lane: Lane | None,
                 clock: Callable[[], float] | None = None) -> Outbox:
    """The outbox with one courier per configured robot (robots.VENDORS, in its order)."""
    alerts = with_secrets(config.alerts)
    now = clock or time.time
    built = [vendor.build(alerts, host, alerts.timeout_s, now) for vendor in VENDORS.values()]
    share = Share(config.root)
    store = Store(Path(alerts.outbox_dir) if alerts.outbox_dir else share.outbox, lane)
    couriers = [Courier(robot, per_minute, store, now, language=language(config))
                for robot, per_minute in filter(None, built)]
    journal = logs.host_folder(share.internal, host) / "alerts.jsonl"  # one per host: hosts never share a file
    if not couriers:
        first, *rest = VENDORS
        log.warning("no chat robot configured ([alerts.%s] / %s): alerts go to the log and %s only", first,
                    " / ".join(rest), journal)
    return Outbox(couriers, store, journal, lane, logs.Rotation.of(config.general))


def language(config: Config) -> str:
    return config.alerts.language or config.general.language
