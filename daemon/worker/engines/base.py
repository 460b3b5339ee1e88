"""The engine seam: a resident model that changes the mouth in a chunk of frames.

Frames reach an engine as a uint8 RGB tensor (N, H, W, 3) already on `engine.device` (the pipeline
converts yuv420p from the decoder on that device). Face boxes come per frame; a row of -1 means no
face: the engine must return that frame unchanged. Engines are loaded once per worker and kept resident
across jobs; per-job audio analysis happens once in `prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class Chunk:
    start: int  # index of frames[0] in the output timeline (aligns with the audio)
    frames: torch.Tensor  # (N, H, W, 3) uint8 RGB on the engine's device
    boxes: np.ndarray  # (N, 4) int32 x1, y1, x2, y2 in frame pixels; -1 rows: no face


class Engine(Protocol):
    name: str
    device: torch.device
    fps: float | None  # a frame rate the model needs; None = any (every engine today: the source's)

    def prepare(self, wav16k: np.ndarray, fps: float, n_frames: int) -> Any:
        """Per-job audio features for frames 0..n_frames-1 (computed once, host or device memory)."""
        ...

    def render(self, chunk: Chunk, features: Any) -> torch.Tensor:
        """Return the chunk's frames with the mouth following the speech, same shape and dtype."""
        ...

    def max_batch(self) -> int:
        """Frames the engine can take in one call on this device (the pipeline may ask for fewer)."""
        ...
