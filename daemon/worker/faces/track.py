"""The boxes the renderer reads: the face pass's rows as they become final, refined by the engine's
box track (wav2lip: calibration, pads, smoothing) where it has one."""

from __future__ import annotations

import time

import numpy as np

from daemon.worker.engines.base import BoxStream
from daemon.worker.faces.analysis import FacePass


class Boxes:
    """Face boxes per source frame as the renderer needs them: the face pass runs ahead in the
    background and the engine's track (wav2lip: calibration, pads, smoothing) refines what it delivers.
    `until(n)` waits (timed as "faces") until rows 0..n-1 are final."""

    def __init__(self, faces: FacePass, timings: dict[str, float], track: BoxStream | None = None) -> None:
        self.faces, self.track, self.timings = faces, track, timings
        self.count, self.cached = faces.count, faces.cached
        self.rows = np.full((faces.count, 4), -1, np.int32)
        self.final = 0
        self._fed = 0  # rows of the face pass handed to the track

    def until(self, frames: int) -> np.ndarray:
        started = time.monotonic()
        try:
            while self.final < min(frames, self.count):
                raw = self.faces.until(max(frames, self._fed + 1))
                new, self._fed = raw[self._fed:self.faces.final], self.faces.final
                out = new if self.track is None else self.track.push(new)
                if self.track is not None and self._fed == self.count:
                    out = np.concatenate([out, self.track.finish()])
                self.rows[self.final:self.final + len(out)] = out
                self.final += len(out)
        finally:
            self.timings["faces"] += time.monotonic() - started
        return self.rows

    def close(self) -> None:
        self.faces.close()
