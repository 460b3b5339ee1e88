"""The weight-free `warp` engine: drops the jaw in step with the speech envelope.

Per frame, openness in [0, 1] comes from the RMS of the speech in that frame's slot. The lower face is
warped by a smooth vertical displacement field (grid_sample, batched, on CUDA when present): zero above
the lips and around the face, so pixels outside the feathered region stay bit-exact; openness 0
(silence) or no face leaves the frame untouched. No randomness: the same input gives the same output.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from daemon.worker.engines.base import Chunk
from daemon.worker.engines.envelope import frame_rms
from daemon.worker.engines.frames import pick_device

# Geometry in face-box units (u: 0 = top of the box, 1 = bottom; the LBP box ends near the lower lip).
_U_TOP, _U_LIP, _U_JAW, _U_END = 0.70, 0.84, 1.12, 1.45  # ramp up to the lip line, hold, fade below chin
_X_HOLD, _X_END = 0.20, 0.42  # half-widths: full effect, fade-out edge
_MAX_DROP = 0.10  # jaw drop at openness 1, in face heights
_GATE = 0.06  # below this fraction of the loud level a frame counts as silent


def openness(rms: np.ndarray) -> np.ndarray:
    """Map per-frame RMS to [0, 1]: 0 at and below the silence gate, 1 at the loud (95th pct) level."""
    voiced = rms[rms > 1e-4]
    if voiced.size == 0:
        return np.zeros_like(rms, dtype=np.float32)
    loud = float(np.percentile(voiced, 95))
    gate = max(1e-4, _GATE * loud)
    return np.clip((rms - gate) / max(loud - gate, 1e-6), 0.0, 1.0).astype(np.float32)


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


class WarpEngine:
    name = "warp"
    fps: float | None = None

    def __init__(self, strength: float = 1.0, device: torch.device | None = None) -> None:
        self.strength = strength
        self.device = device or pick_device()

    def prepare(self, wav16k: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
        scaled: np.ndarray = openness(frame_rms(wav16k, fps, n_frames)) * np.float32(self.strength)
        return scaled

    def max_batch(self) -> int:
        return 64

    def render(self, chunk: Chunk, features: np.ndarray) -> torch.Tensor:
        frames = chunk.frames
        n = frames.shape[0]
        amount = features[chunk.start:chunk.start + n]
        amount = np.pad(amount, (0, n - len(amount)))
        boxes = chunk.boxes.astype(np.float64)
        active = np.nonzero((amount > 0) & (boxes[:, 0] >= 0) & (boxes[:, 2] > boxes[:, 0]))[0]
        if active.size == 0:
            return frames
        out = frames.clone()
        self._warp(frames, out, boxes[active], amount[active], active)
        return out

    def _warp(self, frames: torch.Tensor, out: torch.Tensor, boxes: np.ndarray, amount: np.ndarray,
              idx: np.ndarray) -> None:
        _, height, width, _ = frames.shape
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        # one ROI size for the batch (the largest face), placed per frame: tensors stay rectangular
        rw = min(width, int(np.ceil(2 * _X_END * bw.max())) + 4)
        rh = min(height, int(np.ceil((_U_END - _U_TOP) * bh.max())) + 4)
        ox = np.clip(np.round(cx - rw / 2), 0, width - rw).astype(np.int64)
        oy = np.clip(np.round(boxes[:, 1] + (_U_TOP - 0.02) * bh), 0, height - rh).astype(np.int64)
        crops = torch.stack([frames[i, y:y + rh, x:x + rw] for i, x, y in zip(idx, ox, oy, strict=True)])
        dev = frames.device

        def col(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=torch.float32, device=dev).view(-1, 1, 1)

        gy = torch.arange(rh, dtype=torch.float32, device=dev).view(1, rh, 1) + col(oy)
        gx = torch.arange(rw, dtype=torch.float32, device=dev).view(1, 1, rw) + col(ox)
        u = (gy - col(boxes[:, 1])) / col(bh)
        ramp_in = _smoothstep((u - _U_TOP) / (_U_LIP - _U_TOP))
        ramp_out = 1.0 - _smoothstep((u - _U_JAW) / (_U_END - _U_JAW))
        dx = (gx - col(cx)).abs() / col(bw)
        across = 1.0 - _smoothstep((dx - _X_HOLD) / (_X_END - _X_HOLD))
        drop = ramp_in * ramp_out * across * col(_MAX_DROP * amount * bh)  # pixels, content moves down
        src_y = gy - drop - col(oy)
        src_x = (gx - col(ox)).expand_as(src_y)
        grid = torch.stack([2 * src_x / max(rw - 1, 1) - 1, 2 * src_y / max(rh - 1, 1) - 1], -1)
        img = crops.permute(0, 3, 1, 2).float()
        warped = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
        warped = warped.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        moved = (drop > 1e-3).unsqueeze(-1)
        result = torch.where(moved, warped, crops)  # exact original wherever the field is zero
        for k, (i, x, y) in enumerate(zip(idx, ox, oy, strict=True)):
            out[i, y:y + rh, x:x + rw] = result[k]
