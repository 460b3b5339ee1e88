"""The chat robots, one module per vendor, and VENDORS: the one table that lists them.

Adding a robot: a module here with its `Poster` subclass (message shape, signing, escaping, any vendor
codes) and its `Vendor`, a row below, and its `[alerts.<name>]` section in core/config.py. The outbox,
the secrets file, the doctor's test alert, status and metrics then take it up by name.
"""

from __future__ import annotations

from daemon.sentinel.alerts.robots import dingtalk, feishu, webhook, wecom
from daemon.sentinel.alerts.robots.dingtalk import DingTalkRobot
from daemon.sentinel.alerts.robots.feishu import FeishuRobot
from daemon.sentinel.alerts.robots.poster import Delivery, Outcome, Robot, Vendor
from daemon.sentinel.alerts.robots.webhook import JsonWebhook
from daemon.sentinel.alerts.robots.wecom import WeComRobot

__all__ = ["VENDORS", "Delivery", "DingTalkRobot", "FeishuRobot", "JsonWebhook", "Outcome", "Robot", "Vendor",
           "WeComRobot"]

# in the order the outbox builds them and messages name them
VENDORS: dict[str, Vendor] = {v.name: v for v in (dingtalk.VENDOR, wecom.VENDOR, feishu.VENDOR, webhook.VENDOR)}
