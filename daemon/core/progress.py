"""A running job's progress: `processing/<job>/progress.json` (chunk i/N, %, fps, ETA), replaced atomically.

The worker writes it as rendering advances — after every chunk and, paced by `Pacer`, within a chunk
(every batch, at most once per EVERY_S) — so that "no progress" means none; status pages,
`lipsyncd status` and `submit --wait` read it.
It is history of the current attempt, not state: a missing or stale file only means "no news yet".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from daemon.core import atomic

PROGRESS = "progress.json"
EVERY_S = 1.0  # news within a chunk at most this often: one lease write + two small files each time


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


def record(job_id: str, attempt: int, chunk: int, chunks: int, frames_done: int, frames_total: int,
           fps: float, eta_s: float | None, phase: str = "render", now: float | None = None) -> dict[str, Any]:
    percent = round(min(100.0, 100.0 * frames_done / frames_total), 1) if frames_total else None
    return {"job": job_id, "attempt": attempt, "phase": phase, "chunk": chunk, "chunks": chunks,
            "frames_done": frames_done, "frames_total": frames_total, "percent": percent,
            "fps": round(fps, 2), "eta_s": round(eta_s, 1) if eta_s is not None else None,
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
