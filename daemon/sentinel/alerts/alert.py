"""An alert as the watchdog raises it: incident key, severity, title and body, and cutting it to bytes.

Alerts are rendered in the operator's language when raised; sinks only cut and wrap them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Severity(str, Enum):
    CRITICAL = "critical"  # a human must act (gave up, restart loop)
    WARNING = "warning"  # something went wrong and was handled (stall → restart, jobs failed)
    RESOLVED = "resolved"  # an earlier incident cleared


@dataclass(frozen=True)
class Alert:
    key: str  # incident key, e.g. "stall:host--gpu0"; de-duplication and digests group by it
    severity: Severity
    title: str
    text: str
    raised_at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        return cls(key=str(data["key"]), severity=Severity(data["severity"]), title=str(data["title"]),
                   text=str(data["text"]), raised_at=float(data["raised_at"]), id=str(data["id"]))

    def line(self) -> str:
        """One line for the local log and for digests."""
        return f"[{self.severity.value}] {self.title}: {' '.join(self.text.split())}"


ELLIPSIS = "…"


def cut_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character, marked with an ellipsis."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = max(0, limit - len(ELLIPSIS.encode("utf-8")))
    # errors="ignore" drops a trailing partial multi-byte sequence: Chinese is 3 bytes a character
    return data[:room].decode("utf-8", errors="ignore") + ELLIPSIS
