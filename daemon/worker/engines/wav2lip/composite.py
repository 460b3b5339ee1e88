"""Face crops in, generated faces back into full-resolution frames, all on the frames' device.

Crops follow inference.py: the box region (aspect not kept) resized bilinearly to 96x96, no antialias.
Two ways back: `paste` (upstream: the whole rectangle, uint8-truncated prediction resized into it) and
`feather` (default: only the lower face, blended through a soft mask, so the eyes, the brows and the
resolution of the upper face stay the original's).

Every step handles a whole batch in a few kernels: each frame's box gets its own bilinear sampling
table (`_Taps`, F.interpolate's align_corners=False arithmetic), so boxes of different sizes are
resized together by gathering, not one interpolate call per frame. On the GPU box the per-frame loops
were ~10 kernel launches per face and bound the engine stage (bench/RESULTS.md, issue 15).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from daemon.worker.engines.wav2lip.generator import IMG_SIZE


@dataclass(frozen=True)
class _Taps:
    """Bilinear taps along one axis for a batch: out[b, j] = w0[b, j]·in[i0[b, j]] + w1[b, j]·in[i1[b, j]]."""

    i0: torch.Tensor  # (B, n) int64
    i1: torch.Tensor
    w0: torch.Tensor  # (B, n) float32
    w1: torch.Tensor


def _taps(size_in: torch.Tensor, size_out: torch.Tensor, dst: torch.Tensor) -> _Taps:
    """Sampling table of F.interpolate(mode="bilinear", align_corners=False) per batch row.

    `size_in`, `size_out`: (B, 1) float32; `dst`: (B, n) float32 output positions (may fall outside
    0..size_out-1: the caller masks those). src = (dst + 0.5)·in/out − 0.5, clamped at 0, and the upper
    neighbour clamped at in − 1, exactly as ATen's upsample_bilinear2d.
    """
    scale = size_in / size_out
    src = ((dst + 0.5) * scale - 0.5).clamp_(min=0)
    last = (size_in - 1).long()
    i0 = src.long().minimum(last)
    w1 = src - i0.float()
    i1 = (i0 + 1).minimum(last)
    return _Taps(i0, i1, 1.0 - w1, w1)


def _resample(img: torch.Tensor, ys: _Taps, xs: _Taps, which: torch.Tensor | None = None) -> torch.Tensor:
    """(N, h, w, C) images → (B, ny, nx, C) float32 through per-row taps (gathers, no per-frame calls);
    row b reads image `which[b]` (default: b)."""
    rows = which if which is not None else torch.arange(img.shape[0], device=img.device)
    b = rows[:, None, None]

    def at(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return img[b, yi[:, :, None], xi[:, None, :]].float()

    wy0, wy1 = ys.w0[:, :, None, None], ys.w1[:, :, None, None]
    wx0, wx1 = xs.w0[:, None, :, None], xs.w1[:, None, :, None]
    top = at(ys.i0, xs.i0) * wx0 + at(ys.i0, xs.i1) * wx1
    bottom = at(ys.i1, xs.i0) * wx0 + at(ys.i1, xs.i1) * wx1
    return top * wy0 + bottom * wy1


def _index(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(rows, np.int64)).to(device)


def _box_tensor(boxes: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, 4) float32 x1, y1, x2, y2 of the selected rows, on `device` (one small upload)."""
    return torch.from_numpy(np.ascontiguousarray(boxes[rows], dtype=np.float32)).to(device)


def crop_faces(frames: torch.Tensor, boxes: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """(len(rows),3,96,96) float32 RGB in [0,255] from uint8 (N,H,W,3) frames and x1,y1,x2,y2 boxes."""
    box = _box_tensor(boxes, rows, frames.device)
    out = torch.arange(IMG_SIZE, device=frames.device, dtype=torch.float32)[None].expand(len(rows), -1)
    ys = _taps(box[:, 3:4] - box[:, 1:2], torch.full_like(box[:, :1], IMG_SIZE), out)
    xs = _taps(box[:, 2:3] - box[:, 0:1], torch.full_like(box[:, :1], IMG_SIZE), out)
    top, left = box[:, 1:2].long(), box[:, 0:1].long()
    ys = _Taps(ys.i0 + top, ys.i1 + top, ys.w0, ys.w1)
    xs = _Taps(xs.i0 + left, xs.i1 + left, xs.w0, xs.w1)
    return _resample(frames, ys, xs, _index(rows, frames.device)).permute(0, 3, 1, 2).contiguous()


def model_input(faces_rgb: torch.Tensor) -> torch.Tensor:
    """(B,6,96,96) in [0,1]: BGR with rows 48.. zeroed, then the unmasked BGR reference (inference.py)."""
    bgr = faces_rgb.flip(1)  # the network was trained on cv2 (BGR) images
    masked = bgr.clone()
    masked[:, :, IMG_SIZE // 2:] = 0
    return torch.cat([masked, bgr], dim=1) / 255.0


@dataclass(frozen=True)
class _Canvas:
    """The union of a batch's boxes (frame pixels) and, per row, where each canvas pixel lies in its box."""

    x1: int
    y1: int
    x2: int
    y2: int
    ky: torch.Tensor  # (B, ch) float32 canvas row − box top: a box-relative row index
    kx: torch.Tensor  # (B, cw)
    h: torch.Tensor  # (B, 1) float32 box heights
    w: torch.Tensor
    inside: torch.Tensor  # (B, ch, cw) bool: the pixel is in that row's box


def _canvas(boxes: np.ndarray, rows: np.ndarray, device: torch.device) -> _Canvas:
    sel = boxes[rows]
    x1, y1, x2, y2 = (int(v) for v in (sel[:, 0].min(), sel[:, 1].min(), sel[:, 2].max(), sel[:, 3].max()))
    box = _box_tensor(boxes, rows, device)
    ky = torch.arange(y1, y2, device=device, dtype=torch.float32)[None] - box[:, 1:2]
    kx = torch.arange(x1, x2, device=device, dtype=torch.float32)[None] - box[:, 0:1]
    h, w = box[:, 3:4] - box[:, 1:2], box[:, 2:3] - box[:, 0:1]
    inside = ((ky >= 0) & (ky < h))[:, :, None] & ((kx >= 0) & (kx < w))[:, None, :]
    return _Canvas(x1, y1, x2, y2, ky, kx, h, w, inside)


def _faces_on(canvas: _Canvas, pred: torch.Tensor) -> torch.Tensor:
    """(B,3,96,96) predictions resized into their boxes → (B, ch, cw, 3) float32 on the canvas."""
    size = torch.full_like(canvas.h, IMG_SIZE)
    ys, xs = _taps(size, canvas.h, canvas.ky), _taps(size, canvas.w, canvas.kx)
    return _resample(pred.permute(0, 2, 3, 1), ys, xs)


def _put(frames: torch.Tensor, rows: np.ndarray, canvas: _Canvas, pixels: torch.Tensor) -> None:
    idx = _index(rows, frames.device)
    view = frames[:, canvas.y1:canvas.y2, canvas.x1:canvas.x2]
    view[idx] = pixels


def paste(frames: torch.Tensor, boxes: np.ndarray, rows: np.ndarray, pred_rgb: torch.Tensor) -> None:
    """Upstream compositing, in place: truncate to uint8, resize to the box, overwrite the rectangle."""
    pred = (pred_rgb.float() * 255.0).to(torch.uint8).float()  # .astype(np.uint8) truncates
    canvas = _canvas(boxes, rows, frames.device)
    face = _faces_on(canvas, pred).round_().clamp_(0, 255).to(torch.uint8)
    idx = _index(rows, frames.device)
    region = frames[idx, canvas.y1:canvas.y2, canvas.x1:canvas.x2]
    _put(frames, rows, canvas, torch.where(canvas.inside[..., None], face, region))


def lower_face_weights(ky: torch.Tensor, kx: torch.Tensor, h: torch.Tensor, w: torch.Tensor, top: float,
                       feather: float) -> torch.Tensor:
    """(B, ny, nx) weights at box-relative rows `ky` (B, ny) and columns `kx` (B, nx) of boxes h × w:
    0 above `top`·h, rising smoothly to 1 over `feather`·h, soft at the other edges, 0 outside."""
    ys = (ky + 0.5) / h
    xs = (kx + 0.5) / w
    f = max(feather, 1e-3)
    rise = ((ys - top) / f).clamp(0, 1)
    bottom = ((1.0 - ys) / (f / 2)).clamp(0, 1)
    sides = (torch.minimum(xs, 1.0 - xs) / (f / 2)).clamp(0, 1)
    vertical = rise * bottom
    mask = vertical[:, :, None] * sides[:, None, :]
    return mask * mask * (3 - 2 * mask)  # smoothstep: no visible seam where the ramps end


def feather(frames: torch.Tensor, boxes: np.ndarray, rows: np.ndarray, pred_rgb: torch.Tensor,
            top: float = 0.45, width: float = 0.2) -> None:
    """Blend the generated lower face into the frames in place through `lower_face_weights`."""
    canvas = _canvas(boxes, rows, frames.device)
    face = _faces_on(canvas, pred_rgb.float() * 255.0)
    mask = lower_face_weights(canvas.ky, canvas.kx, canvas.h, canvas.w, top, width)
    mask = (mask * canvas.inside)[..., None]  # pixels outside a row's box keep their value exactly
    idx = _index(rows, frames.device)
    region = frames[idx, canvas.y1:canvas.y2, canvas.x1:canvas.x2].float()
    blended = region + (face - region) * mask
    _put(frames, rows, canvas, blended.round_().clamp_(0, 255).to(torch.uint8))
