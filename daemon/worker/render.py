"""The seam between the worker loop and whatever turns (audio, video) into a result file.

The worker owns folders, leases and outcomes; a Renderer owns media. A Renderer writes exactly the
file it is given (a temporary name), reports a `Progress` after every chunk and returns statistics for
report.json. Raise JobRejected for bad input, EnvironmentFault for a sick machine, Interrupted when
`should_stop()` turned true between chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from daemon.core.progress import Progress

__all__ = ["Interrupted", "Progress", "ProgressFn", "RenderRequest", "Renderer", "StopFn"]


class Interrupted(Exception):
    """The renderer stopped between chunks because a stop was requested; the job is requeued."""


@dataclass(frozen=True)
class RenderRequest:
    job_id: str
    attempt: int
    audio: Path
    video: Path
    output: Path  # temporary name to write; the worker renames it into place
    workdir: Path  # inside the job folder: segments, resume state; survives a crash
    engine: str
    options: dict[str, Any] = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]
StopFn = Callable[[], bool]


class Renderer(Protocol):
    def render(self, request: RenderRequest, progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        """Write request.output completely; return statistics for report.json."""
        ...
