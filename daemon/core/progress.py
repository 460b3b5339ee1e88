"""A running job's progress: one `Progress` value, and `processing/<job>/progress.json` replaced atomically.

The renderer reports a `Progress`; the worker carries it in its heartbeat and writes it to progress.json
(chunk i/N, %, fps, ETA) as rendering advances — after every chunk and, paced by `Pacer`, within a
chunk (every batch, at most once per EVERY_S) — so that "no progress" means none; status pages,
`lipsyncd status` and `submit --wait` read it.
It is history of the current attempt, not state: a missing or stale file only means "no news yet".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.core import atomic

PROGRESS = "progress.json"
EVERY_S = 1.0  # news within a chunk at most this often: one lease write + two small files each time


@dataclass(frozen=True)
class Progress:
    """How far the current attempt of a job has come."""

    phase: str = ""  # "probe", "prepare", "render", "finalize"; "" while no job step runs
    chunk: int = 0
    chunks: int = 0
    frames_done: int = 0
    frames_total: int = 0
    fps: float = 0.0
    eta_s: float | None = None

    @property
    def percent(self) -> float | None:
        if not self.frames_total:
            return None
        return round(min(100.0, 100.0 * self.frames_done / self.frames_total), 1)


NO_PROGRESS = Progress()  # a worker with no job step running: loading, idle, stopping


class Pacer:
    """Lets news through when its step changes (a new chunk, a new phase) or EVERY_S has passed."""

    def __init__(self, every_s: float = EVERY_S) -> None:
        self.every_s = every_s
        self._last: tuple[object, float] | None = None

    def due(self, step: object, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        if self._last is not None and self._last[0] == step and t - self._last[1] < self.every_s:
            return False
        self._last = (step, t)
        return True


def record(job_id: str, attempt: int, news: Progress, now: float | None = None) -> dict[str, Any]:
    """progress.json's content: the news of attempt `attempt`, rounded for people."""
    return {"job": job_id, "attempt": attempt, "phase": news.phase, "chunk": news.chunk, "chunks": news.chunks,
            "frames_done": news.frames_done, "frames_total": news.frames_total, "percent": news.percent,
            "fps": round(news.fps, 2), "eta_s": round(news.eta_s, 1) if news.eta_s is not None else None,
            "updated_at": round(time.time() if now is None else now, 3)}


def write(job_dir: Path, data: dict[str, Any]) -> None:
    # no fsync: it is rewritten after every chunk, and a lost update after a crash harms nothing
    atomic.write_json(job_dir / PROGRESS, data, fsync=False)


def read(job_dir: Path) -> dict[str, Any] | None:
    try:
        data = atomic.read_json(job_dir / PROGRESS)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
