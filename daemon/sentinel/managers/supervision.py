"""The process-manager seam: what the watchdog may ask of supervisord, systemd or `lipsyncd up`.

The watchdog only reads a program's state and asks for a restart; it never signals or kills a pid
itself (a pid read from a file may belong to someone else by now).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class ProgramState(Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    EXITED = "EXITED"
    FATAL = "FATAL"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ProgramView:
    name: str  # the manager's name for it: "lipsyncd-worker:lipsyncd-worker-0", "lipsyncd-worker@0.service"
    state: ProgramState
    pid: int | None = None
    started_at: float | None = None  # unix time the current process started
    gave_up: bool = False  # FATAL / start-limit-hit / up's "fatal": the manager stopped trying
    restarts: int | None = None
    detail: str = ""


class ProcessManager(Protocol):
    kind: str
    error: str  # why the last restart() returned False, in the manager's words (socket, polkit, ...)

    def view(self, worker: str) -> ProgramView | None:
        """The manager's view of worker `worker` (e.g. "gpu0"); None when it does not know it."""

    def restart(self, worker: str, reason: str) -> bool:
        """Ask for a restart without waiting for it; False when this manager cannot do it."""

    def poll(self) -> None:
        """Advance restarts in progress (e.g. start what has stopped); cheap and bounded."""

    def workers(self) -> list[str]:
        """Worker names the manager runs, so a worker that never wrote a heartbeat is judged too."""


class NoManager:
    """No process manager: the watchdog alerts, and a human restarts."""

    kind = "none"
    error = "no process manager configured (watchdog.process_manager = none)"

    def view(self, worker: str) -> ProgramView | None:
        return None

    def restart(self, worker: str, reason: str) -> bool:
        return False

    def poll(self) -> None:
        pass

    def workers(self) -> list[str]:
        return []


def worker_number(worker: str) -> str:
    """"gpu0" → "0": the GPU index the manager's names use (the whole name if it has no digits)."""
    match = re.search(r"(\d+)$", worker)
    return match.group(1) if match else worker


def expand(template: str, worker: str) -> str:
    return template.format(worker=worker, n=worker_number(worker))


def worker_from(template: str, name: str) -> str | None:
    """Invert `expand` for names of the form the template makes; workers are called gpu<N>."""
    pattern = re.escape(template).replace(r"\{n\}", r"(?P<n>\d+)").replace(r"\{worker\}", r"(?P<w>[\w.-]+)")
    match = re.fullmatch(pattern, name)
    if not match:
        return None
    groups = match.groupdict()
    return groups.get("w") or f"gpu{groups['n']}"
