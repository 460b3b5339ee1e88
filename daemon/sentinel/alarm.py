"""How the patrol raises alerts: one incident per condition key, worded in the operator's language.

Every concern of the pass (workers, the appliance's conditions, failed-job digests) raises through one
Alarm, so each alert is keyed, de-duplicated (open once, remind, resolve once) and worded the same way.
"""

from __future__ import annotations

from daemon.sentinel.alerts import wording
from daemon.sentinel.alerts.alert import Severity
from daemon.sentinel.alerts.outbox import Outbox
from daemon.sentinel.incidents import Change, IncidentBook


class Alarm:
    def __init__(self, outbox: Outbox, host: str, language: str, renotify_s: float) -> None:
        self.outbox, self.host, self.language = outbox, host, language
        self.book = IncidentBook(renotify_s)
        self.titles: dict[str, str] = {}  # open incident key → the title it was raised with

    def condition(self, key: str, active: bool, kind: str, severity: Severity, now: float,
                  **params: object) -> None:
        """Alert when `key` turns active (and at each reminder); say "resolved" once when it clears."""
        opened = self.book.since(key)
        change = self.book.update(key, active, now)
        if change in (Change.OPENED, Change.REMINDER):
            title, _ = wording.say(kind, self.language, host=self.host, **params)
            self.titles[key] = title
            self.send(kind, key, severity, now, **params)
        elif change is Change.RESOLVED:
            self.send("resolved", key, Severity.RESOLVED, now, title=self.titles.pop(key, key),
                      minutes=minutes(now - (opened or now)))

    def send(self, kind: str, key: str, severity: Severity, now: float, **params: object) -> None:
        params.setdefault("host", self.host)
        self.outbox.put(wording.alert(kind, key, severity, self.language, now, **params))


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}"
