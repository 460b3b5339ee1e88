"""What a detector is shown: how its samples are decoded (size, pixel format, batch) and the analyser
that turns a batch of them into boxes; the engine's batch RGB detector (S3FD) as the face pass sees it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

RGB_BATCH = 32  # sampled RGB frames handed to the engine's detector at once (~30 MB at 480p)

Analyse = Callable[[np.ndarray], np.ndarray]  # (B, h, w[, 3]) uint8 samples → (B, 4) boxes, NaN = none


class RgbDetector(Protocol):
    """A batch face detector for sampled RGB frames: the wav2lip engine's S3FD when configured."""

    name: str  # part of the cache key, and the box geometry the engine calibrates for ("s3fd")
    height: int  # samples are decoded at most this high (aspect kept)

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (N,H,W,3) → (N,4) float x1,y1,x2,y2 in those pixels; -1 rows: none."""
        ...


@dataclass(frozen=True)
class Samples:
    """How a detector wants its samples decoded, and a fresh per-segment analyser (it may track state)."""

    width: int
    height: int
    pix_fmt: str  # "gray" | "rgb24"
    batch: int
    analyser: Callable[[], Analyse]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.pix_fmt == "gray" else (self.height, self.width, 3)


def rgb_analyser(detector: RgbDetector, lock: threading.Lock) -> Analyse:
    def analyse(frames: np.ndarray) -> np.ndarray:
        with lock:  # one detector (one GPU, a batch size it adapts on OOM): segments take turns
            boxes = np.array(detector.detect(frames), dtype=np.float64).reshape(-1, 4)
        boxes[boxes[:, 0] < 0] = np.nan
        return boxes
    return analyse
