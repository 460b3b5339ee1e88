"""Which robots to alert, built from `[alerts]` plus an optional secrets file, and the outbox around them.

Secrets precedence: environment (`LIPSYNCD_ALERTS_DINGTALK_SECRET`, ...) and config.toml are merged by
the config loader; the secrets file then fills only keys still empty. Values are never logged.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from daemon.core import logs
from daemon.core.config import AlertsConfig, Config, read_toml
from daemon.core.errors import ConfigError
from daemon.core.share import Share
from daemon.sentinel.courier import Courier
from daemon.sentinel.lane import Lane
from daemon.sentinel.outbox import Outbox, Store
from daemon.sentinel.robots import DingTalkRobot, FeishuRobot, JsonWebhook, WeComRobot

log = logging.getLogger(__name__)

SECRET_KEYS = {"dingtalk": ("webhook", "secret"), "wecom": ("webhook",), "feishu": ("webhook", "secret"),
               "webhook": ("url",)}


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
    alerts = with_secrets(config.alerts)
    kw = {"clock": clock} if clock else {}
    t = alerts.timeout_s
    robots: list[tuple[object, int]] = []
    if alerts.dingtalk.webhook:
        d = alerts.dingtalk
        robots.append((DingTalkRobot(d.webhook, d.secret, d.keyword, t, **kw), d.per_minute))
    if alerts.wecom.webhook:
        w = alerts.wecom
        robots.append((WeComRobot(w.webhook, w.msgtype, t, **kw), w.per_minute))
    if alerts.feishu.webhook:
        f = alerts.feishu
        robots.append((FeishuRobot(f.webhook, f.secret, f.keyword, t, **kw), f.per_minute))
    if alerts.webhook.url:
        robots.append((JsonWebhook(alerts.webhook.url, host, t, **kw), alerts.webhook.per_minute))
    share = Share(config.root)
    store = Store(Path(alerts.outbox_dir) if alerts.outbox_dir else share.outbox, lane)
    couriers = [Courier(robot, per_minute, store, language=language(config), **kw)  # type: ignore[arg-type]
                for robot, per_minute in robots]
    journal = logs.host_folder(share.internal, host) / "alerts.jsonl"  # one per host: hosts never share a file
    if not couriers:
        log.warning("no chat robot configured ([alerts.dingtalk] / wecom / feishu / webhook): "
                    "alerts go to the log and %s only", journal)
    return Outbox(couriers, store, journal, lane, logs.Rotation.of(config.general))


def language(config: Config) -> str:
    return config.alerts.language or config.general.language
