"""Finding the face for Wav2Lip: the detector seam, S3FD, box calibration, reduced-resolution batches.

Wav2Lip was trained on S3FD boxes. S3FD runs when the operator supplies its checkpoint; otherwise the
media pipeline's offline detector plugs in through `FaceDetector`, and its boxes are mapped toward
S3FD's geometry by a `BoxCalibration`. Detection runs on frames scaled down to `detect_height`; on GPU
out-of-memory the batch halves, then the resolution drops, and the same frames are tried again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

import daemon.worker.engines.wav2lip.memory as memory
import daemon.worker.engines.wav2lip.s3fd as s3fd
from daemon.core.errors import EnvironmentFault

log = logging.getLogger(__name__)

MIN_DETECT_HEIGHT = 180


class FaceDetector(Protocol):
    """One box per frame; `geometry` names the calibration its boxes need ("s3fd" = none)."""

    geometry: str

    def detect(self, frames: torch.Tensor) -> np.ndarray:
        """uint8 RGB (N,H,W,3) on any device → (N,4) float x1,y1,x2,y2 in those pixels; -1 rows: none."""
        ...


@dataclass(frozen=True)
class BoxCalibration:
    """A box → box map in units of the box's own size: centre shift (dx, dy) and scale (sx, sy)."""

    dx: float = 0.0
    dy: float = 0.0
    sx: float = 1.0
    sy: float = 1.0


IDENTITY = BoxCalibration()
# NOT measured: a first guess for frontal cascades (their boxes stop near the lower lip and start at the
# brows; S3FD's reach the chin). Refit with `fit_calibration` on S3FD boxes of the same frames.
CALIBRATIONS: dict[str, BoxCalibration] = {"s3fd": IDENTITY, "lbp": BoxCalibration(dy=0.08, sy=1.15)}
# what report.json says of a wav2lip job whose boxes came through that unfitted calibration
NO_S3FD = ("no S3FD face detector (engines.wav2lip.face_detector_checkpoint is empty): the face boxes came "
           "from the offline detector through a calibration toward S3FD's geometry that was never fitted; "
           "lip-sync quality may suffer: supply s3fd.pth")


def calibrate(boxes: np.ndarray, cal: BoxCalibration) -> np.ndarray:
    """Apply `cal` to (N,4) x1,y1,x2,y2 boxes; -1 rows stay -1."""
    boxes = np.asarray(boxes, dtype=np.float64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + cal.dx * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + cal.dy * h
    w, h = w * cal.sx, h * cal.sy
    out = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    out[boxes[:, 0] < 0] = -1
    return out


def fit_calibration(theirs: np.ndarray, target: np.ndarray) -> BoxCalibration:
    """Least-squares calibration taking `theirs` onto `target` (both (N,4), rows with a face in both)."""
    ok = (theirs[:, 0] >= 0) & (target[:, 0] >= 0)
    a, b = np.asarray(theirs, float)[ok], np.asarray(target, float)[ok]
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    dx = ((b[:, 0] + b[:, 2]) - (a[:, 0] + a[:, 2])) / 2 / w
    dy = ((b[:, 1] + b[:, 3]) - (a[:, 1] + a[:, 3])) / 2 / h
    sx, sy = (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h
    return BoxCalibration(float(dx.mean()), float(dy.mean()), float(sx.mean()), float(sy.mean()))


class S3FDDetector:
    """The S3FD network resident on `device`; fp16 autocast on CUDA (reference §7: ~6x faster)."""

    geometry = "s3fd"

    def __init__(self, net: s3fd.S3FD, device: torch.device, half: bool = True) -> None:
        self.device = device
        self.net = net.to(device).eval()
        self.half = half and device.type == "cuda"

    @torch.inference_mode()
    def detect(self, frames: torch.Tensor) -> np.ndarray:
        x = s3fd.preprocess(frames.to(self.device))
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.half):
            best = s3fd.best_boxes(self.net(x))
        found = best.cpu().numpy().astype(np.float64)
        boxes = found[:, :4].astype(np.int64).astype(np.float64)  # upstream: map(int, box)
        boxes[found[:, 4] <= 0] = -1
        return boxes


def downscale(frames: torch.Tensor, height: int) -> tuple[torch.Tensor, float]:
    """uint8 (N,H,W,3) scaled so H <= height (area-averaged); returns the frames and the scale used."""
    h, w = frames.shape[1:3]
    if h <= height:
        return frames, 1.0
    scale = height / h
    size = (height, max(1, round(w * scale)))
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    out = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return out, size[0] / h


class FaceFinder:
    """Batched, reduced-resolution detection with OOM fallback; boxes come back in full-frame pixels."""

    def __init__(self, detector: FaceDetector, detect_height: int = 480, batch: int = 16,
                 calibration: BoxCalibration | None = None) -> None:
        self.detector = detector
        self.detect_height = detect_height
        self.batch = batch
        self.calibration = calibration or CALIBRATIONS.get(detector.geometry, IDENTITY)

    def find(self, frames: torch.Tensor) -> np.ndarray:
        """(N,4) float x1,y1,x2,y2 per frame in the frames' pixels, calibrated to S3FD; -1 rows: none."""
        while True:
            try:
                parts, self.batch = memory.batched(lambda a, b: self._detect(frames[a:b]),
                                                   frames.shape[0], self.batch, "face detection")
                break
            except EnvironmentFault:
                if self.detect_height <= MIN_DETECT_HEIGHT:
                    raise
                self.detect_height = max(MIN_DETECT_HEIGHT, int(self.detect_height * 0.75))
                self.batch = 1
                log.warning("face detection out of memory at batch 1: detecting at %dp", self.detect_height)
        boxes = np.concatenate(parts) if parts else np.zeros((0, 4))
        return calibrate(boxes, self.calibration)

    def _detect(self, frames: torch.Tensor) -> np.ndarray:
        small, scale = downscale(frames, self.detect_height)
        boxes = np.asarray(self.detector.detect(small), dtype=np.float64).reshape(-1, 4)
        found = boxes[:, 0] >= 0
        boxes[found] = boxes[found] / scale
        return boxes


class SampleDetector:
    """S3FD as the pipeline's face pass sees it (daemon.worker.faces.sampling.RgbDetector): numpy in, numpy out."""

    name = "s3fd"  # boxes come back calibrated to S3FD geometry already

    def __init__(self, finder: FaceFinder) -> None:
        self.finder = finder
        self.height = finder.detect_height

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (N,H,W,3) → (N,4) float boxes in those pixels; -1 rows: none."""
        return self.finder.find(torch.from_numpy(frames))
