"""A job folder and the files inside it: the immutable spec, the attempt counter, the lease, outputs.

A Job value is only a pointer (root, state, path); the folder it points at is the truth. Its JobState
lives here beside it (state.py, which moves jobs, imports both). Layout:
job.json (spec, written once at acceptance), attempt.json, inputs/ (producer files, untouched),
history.jsonl, job.log, lease.json + work/ (in processing/), report.json, error.txt, the result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core import atomic

SPEC = "job.json"
ATTEMPT = "attempt.json"
LEASE = "lease.json"
REPORT = "report.json"
ERROR = "error.txt"
INPUTS = "inputs"
WORK = "work"


class JobState(enum.Enum):
    """Where a job is. Every state but ACCEPTING is a share folder, named by its value, that holds the
    job's folder. An accepting job is one intake is still assembling in its transaction's folder
    (`Share.transaction`); its one move out of there into a state folder is its acceptance."""

    ACCEPTING = "accepting"
    INBOX = "inbox"  # drops wait here; a job folder never does (it starts as ACCEPTING), so no edge leaves it
    STAGING = "staging"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"

    @property
    def folder(self) -> str:
        """The name of this state's share folder (an accepting job has none: it is in its transaction's)."""
        name: str = self.value
        if self is JobState.ACCEPTING:
            raise ValueError("an accepting job is in its intake transaction's folder, not in a state folder")
        return name


FOLDER_STATES = tuple(state for state in JobState if state is not JobState.ACCEPTING)  # one share folder each


@dataclass(frozen=True)
class JobSpec:
    """What to render, fixed at acceptance. Paths are relative to the job folder."""

    id: str
    batch: str
    ticket: str  # ticket file name, under inputs/
    audio: str  # e.g. "inputs/lesson01.wav"
    video: str
    output: str  # result file name in the job folder, e.g. "lesson01.mp4"
    engine: str
    accepted_at: float
    key: str  # duplicate key
    priority: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class Job:
    root: Path
    state: JobState
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def id(self) -> str:
        """The job id: the folder name without the `@owner` suffix a claim adds."""
        return self.path.name.split("@", 1)[0]

    @property
    def owner(self) -> str | None:
        parts = self.path.name.split("@", 1)
        return parts[1] if len(parts) == 2 else None

    def spec(self) -> JobSpec:
        return JobSpec.from_json(atomic.read_json(self.path / SPEC))

    def attempt(self) -> int:
        try:
            return int(atomic.read_json(self.path / ATTEMPT)["attempt"])
        except (OSError, ValueError, KeyError, TypeError):
            return 1

    def set_attempt(self, attempt: int) -> None:
        atomic.write_json(self.path / ATTEMPT, {"attempt": attempt})

    def report(self) -> dict[str, Any] | None:
        try:
            data = atomic.read_json(self.path / REPORT)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
