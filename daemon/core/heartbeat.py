"""Worker heartbeats: one small JSON file per worker in .lipsyncd/workers/, replaced atomically.

The worker writes one after every chunk and on every phase change; the watchdog only reads them.
`progress_at` moves only when real work advanced, `written_at` on every write.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daemon.core import atomic
from daemon.core.progress import NO_PROGRESS, Progress

PHASES = ("loading", "idle", "working", "finalizing", "stopping")


@dataclass(frozen=True)
class Heartbeat:
    host: str
    worker: str  # e.g. "gpu0"; unique per host
    pid: int
    pid_start: float  # process start time (epoch seconds, psutil create_time) to detect pid reuse
    phase: str
    job: str | None = None
    progress: Progress = NO_PROGRESS  # the job's while working; its phase is the heartbeat file's "step"
    progress_at: float = field(default_factory=time.time)  # wall time of the last real progress
    written_at: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.host}--{self.worker}"

    def to_json(self) -> dict[str, Any]:
        """The file's flat layout: the progress fields beside the others, its phase named `step`."""
        data = {k: v for k, v in asdict(self).items() if k != "progress"}
        news = asdict(self.progress)
        news["step"] = news.pop("phase")
        return {**data, **news}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Heartbeat:
        """Raises TypeError for a file that is no heartbeat; unknown keys are ignored."""
        news = {k: data[k] for k in _NEWS if k in data}
        if "step" in data:
            news["phase"] = data["step"]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "progress"}
        return cls(**known, progress=Progress(**news))


_NEWS = tuple(name for name in Progress.__dataclass_fields__ if name != "phase")


def worker_name(gpu: str | None) -> str:
    """gpu0, gpu1, ... or gpu-<first 8 of the UUID> for a worker pinned by UUID."""
    if not gpu:
        return "gpu0"
    return f"gpu{gpu}" if gpu.isdigit() else f"gpu-{gpu.removeprefix('GPU-')[:8]}"


def folder(internal: Path) -> Path:
    return internal / "workers"


def write(internal: Path, beat: Heartbeat) -> Path:
    path = folder(internal) / f"{beat.key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, beat.to_json(), fsync=False)
    return path


def read(path: Path) -> Heartbeat | None:
    """The heartbeat in `path`, or None if it is missing or unreadable (a torn write is impossible)."""
    try:
        data = atomic.read_json(path)
    except (OSError, ValueError):
        return None
    try:
        return Heartbeat.from_json(data)
    except TypeError:
        return None


def read_all(internal: Path) -> list[Heartbeat]:
    beats = []
    base = folder(internal)
    if base.is_dir():
        for path in sorted(base.glob("*.json")):
            beat = read(path)
            if beat is not None:
                beats.append(beat)
    return beats
