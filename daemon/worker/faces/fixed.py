"""The ticket's `face_box`: one face box for every frame, given by the producer; no detection runs.

Upstream inference.py's `--box` ("last resort" for presenters the detector misses): the box is used
as given, without pads or smoothing. It stands in for the detected boxes (`Boxes`, track.py).
"""

from __future__ import annotations

import numpy as np

from daemon.worker.media.plan import Plan


class FixedBoxes:
    """Every source frame's row is the plan's face_box (output pixels x1, y1, x2, y2)."""

    cached = False  # nothing was detected, so nothing is read from or written to the face cache

    def __init__(self, plan: Plan) -> None:
        assert plan.face_box is not None
        self.count = plan.source_frames
        # 16 bytes a source frame: 1.7 MB for 30 minutes at 60 fps
        self.rows = np.tile(np.array(plan.face_box, np.int32), (self.count, 1))

    def until(self, frames: int) -> np.ndarray:
        return self.rows

    def close(self) -> None:
        pass
