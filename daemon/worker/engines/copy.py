"""The `copy` engine: returns every frame unchanged. A diagnostic for the media pipeline alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from daemon.worker.engines.base import Chunk
from daemon.worker.engines.frames import pick_device


class CopyEngine:
    name = "copy"
    fps: float | None = None

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device or pick_device()

    def prepare(self, wav16k: np.ndarray, fps: float, n_frames: int) -> Any:
        return None

    def render(self, chunk: Chunk, features: Any) -> torch.Tensor:
        return chunk.frames

    def max_batch(self) -> int:
        return 256
