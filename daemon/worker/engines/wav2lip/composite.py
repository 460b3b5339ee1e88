"""Face crops in, generated faces back into full-resolution frames, all on the frames' device.

Crops follow inference.py: the box region (aspect not kept) resized bilinearly to 96x96, no antialias.
Two ways back: `paste` (upstream: the whole rectangle, uint8-truncated prediction resized into it) and
`feather` (default: only the lower face, blended through a soft mask, so the eyes, the brows and the
resolution of the upper face stay the original's).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from daemon.worker.engines.wav2lip.generator import IMG_SIZE


def crop_faces(frames: torch.Tensor, boxes: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """(len(rows),3,96,96) float32 RGB in [0,255] from uint8 (N,H,W,3) frames and x1,y1,x2,y2 boxes."""
    crops = []
    for i in rows:
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        face = frames[i, y1:y2, x1:x2].permute(2, 0, 1).unsqueeze(0).float()
        crops.append(F.interpolate(face, size=(IMG_SIZE, IMG_SIZE), mode="bilinear", align_corners=False))
    return torch.cat(crops)


def model_input(faces_rgb: torch.Tensor) -> torch.Tensor:
    """(B,6,96,96) in [0,1]: BGR with rows 48.. zeroed, then the unmasked BGR reference (inference.py)."""
    bgr = faces_rgb.flip(1)  # the network was trained on cv2 (BGR) images
    masked = bgr.clone()
    masked[:, :, IMG_SIZE // 2:] = 0
    return torch.cat([masked, bgr], dim=1) / 255.0


def _resize(face: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(face.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0]


def paste(frames: torch.Tensor, boxes: np.ndarray, rows: np.ndarray, pred_rgb: torch.Tensor) -> None:
    """Upstream compositing, in place: truncate to uint8, resize to the box, overwrite the rectangle."""
    pred = (pred_rgb.float() * 255.0).to(torch.uint8).float()  # .astype(np.uint8) truncates
    for k, i in enumerate(rows):
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        face = _resize(pred[k], y2 - y1, x2 - x1).round_().clamp_(0, 255)
        frames[i, y1:y2, x1:x2] = face.to(torch.uint8).permute(1, 2, 0)


@functools.lru_cache(maxsize=256)  # smoothed boxes keep their size for many frames; never mutated
def lower_face_mask(h: int, w: int, top: float, feather: float, device: torch.device) -> torch.Tensor:
    """(h,w) weights: 0 above `top`·h, rising smoothly to 1 over `feather`·h, soft at the other edges."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    f = max(feather, 1e-3)
    rise = ((ys - top) / f).clamp(0, 1)
    bottom = ((1.0 - ys) / (f / 2)).clamp(0, 1)
    sides = (torch.minimum(xs, 1.0 - xs) / (f / 2)).clamp(0, 1)
    vertical = rise * bottom
    mask = vertical[:, None] * sides[None, :]
    return mask * mask * (3 - 2 * mask)  # smoothstep: no visible seam where the ramps end


def feather(frames: torch.Tensor, boxes: np.ndarray, rows: np.ndarray, pred_rgb: torch.Tensor,
            top: float = 0.45, width: float = 0.2) -> None:
    """Blend the generated lower face into the frames in place through `lower_face_mask`."""
    pred = pred_rgb.float() * 255.0
    for k, i in enumerate(rows):
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        h, w = y2 - y1, x2 - x1
        face = _resize(pred[k], h, w).permute(1, 2, 0)
        mask = lower_face_mask(h, w, top, width, frames.device)[:, :, None]
        region = frames[i, y1:y2, x1:x2].float()
        blended = region + (face - region) * mask
        frames[i, y1:y2, x1:x2] = blended.round_().clamp_(0, 255).to(torch.uint8)
