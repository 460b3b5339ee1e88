"""The engine seam: a resident model that changes the mouth in a chunk of frames.

Frames reach an engine as a uint8 RGB tensor (N, H, W, 3) already on `engine.device` (the pipeline
converts yuv420p from the decoder on that device). Face boxes come per frame; a row of -1 means no
face: the engine must return that frame unchanged. Engines are loaded once per worker and kept resident
across jobs; per-job audio analysis happens once in `prepare`.

Every engine is an `Engine`. One that brings its own face detector and box track (wav2lip) is also a
`FaceTracking`; the pipeline asks `face_tracking(engine)` and, for any other engine, uses the media
pipeline's LBP face pass and its boxes as they are.

To add an engine:
1. write it in `daemon/worker/engines/<name>.py` (a package if it is large) as a class with the
   `Engine` members below, plus `FaceTracking`'s if it needs its own detector or box smoothing;
2. add its name to `ENGINES` in `daemon/core/config.py` (the one list of names: config, the CLI's
   `--engine` and the registry all read it), and its settings, if any, as an `engines.<name>` table there
   and in the shipped config.toml;
3. add a factory for it in `daemon/worker/engines/registry.py` that imports the engine lazily (the
   registry refuses to load when its factories and `ENGINES` disagree);
4. torch is imported only below this package (tests/test_architecture.py holds every room to that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from daemon.worker.faces.sampling import RgbDetector


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


class BoxStream(Protocol):
    """An engine's box track: detector boxes in (any number at a time), crop boxes out once final."""

    def push(self, raw: np.ndarray) -> np.ndarray:
        """Detector boxes (N, 4) for the next source frames → the crop boxes now final (maybe none)."""
        ...

    def finish(self) -> np.ndarray:
        """The crop boxes still held back (the end of the video: the smoothing window closes)."""
        ...


@runtime_checkable
class FaceTracking(Protocol):
    """Optional: an engine with its own face detector for the face pass and its own box track."""

    def sample_detector(self) -> RgbDetector | None:
        """The detector the face pass should use on sampled frames; None: the pass uses LBP."""
        ...

    def face_track(self, width: int, height: int, geometry: str = "s3fd") -> BoxStream:
        """A box track for one source video whose detector boxes have `geometry` ("s3fd" or "lbp")."""
        ...


def face_tracking(engine: Engine) -> FaceTracking | None:
    """The engine as a `FaceTracking` if it declares those members, else None."""
    return engine if isinstance(engine, FaceTracking) else None
