"""The share's notice board: STATUS.html and status.json at the root, each replaced atomically.

Both are rebuilt from the folders every `status.interval_s` (core.snapshot); readers see the old or the
new file, never a half-written one. The temp names start with a dot, so Samba hides them by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.core import atomic, snapshot
from daemon.housekeeping import page

HTML = "STATUS.html"
JSON = "status.json"


class Board:
    def __init__(self, root: Path, language: str, refresh_s: float, recent: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.root, self.language, self.refresh_s, self.recent, self.clock = root, language, refresh_s, recent, clock

    def write(self) -> dict[str, Any]:
        """Collect one snapshot and publish it as both files; returns the snapshot."""
        snap = snapshot.collect(self.root, self.clock(), self.recent)
        snap["language"] = self.language
        # the JSON first: a script polling status.json never sees a page newer than its data
        atomic.write_json(self.root / JSON, snap, fsync=False)
        atomic.write_text(self.root / HTML, page.render(snap, self.language, self.refresh_s), fsync=False)
        return snap
