"""The disk guard: intake stops accepting drops while the share is nearly full, and starts again later.

Drops keep waiting in inbox/ (nothing is moved or lost); a gap between the pause and the resume
threshold keeps intake from flapping while a big copy comes and goes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskGuard:
    def __init__(self, root: Path, pause_below_gb: float, resume_above_gb: float,
                 measure: Callable[[Path], int] = free_bytes) -> None:
        self.root = root
        self.pause_at = pause_below_gb * 1e9
        self.resume_at = max(resume_above_gb, pause_below_gb) * 1e9
        self.measure = measure
        self.low = False
        self.free: int | None = None

    def check(self) -> str | None:
        """Why intake must pause now, or None. OSError (share away) propagates to the caller."""
        if self.pause_at <= 0:
            return None
        self.free = self.measure(self.root)
        self.low = self.free < (self.resume_at if self.low else self.pause_at)
        if not self.low:
            return None
        return (f"disk: {self.free / 1e9:.2f} GB free on the share, below intake.pause_below_free_gb = "
                f"{self.pause_at / 1e9:g}; drops wait in inbox/ until more than {self.resume_at / 1e9:g} GB "
                "are free (delete old results from done/ or add space)")
