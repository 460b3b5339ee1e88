"""yuv420p pipe buffers ⇄ RGB uint8 tensors on the engine's device (the one torch module the pipeline uses).

Frames cross the ffmpeg pipes as yuv420p (rgb24 pipes cost 1.7–2.3× a plain transcode, reference/media.md
§9). Going back, only pixels the engine changed are re-encoded into the planes: everything else keeps
its original Y/U/V bytes, so untouched pixels are bit-exact before the encoder.
"""

from __future__ import annotations

import numpy as np
import torch

# BT.601 limited range, the matrix swscale uses for our yuv420p when none is tagged
_TO_RGB = torch.tensor([[1.164, 0.0, 1.596], [1.164, -0.392, -0.813], [1.164, 2.017, 0.0]])
_TO_YUV = torch.tensor([[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]])


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _planes(buf: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = buf.shape[0]
    ys = width * height
    cs = ys // 4
    y = buf[:, :ys].reshape(n, height, width)
    u = buf[:, ys:ys + cs].reshape(n, height // 2, width // 2)
    v = buf[:, ys + cs:ys + 2 * cs].reshape(n, height // 2, width // 2)
    return y, u, v


def to_rgb(buf: np.ndarray, width: int, height: int, device: torch.device) -> torch.Tensor:
    """(N, frame_bytes) yuv420p → (N, H, W, 3) uint8 RGB on `device`."""
    y, u, v = (torch.from_numpy(p).to(device, non_blocking=True) for p in _planes(buf, width, height))
    out = torch.empty((buf.shape[0], height, width, 3), dtype=torch.uint8, device=device)
    m = _TO_RGB.to(device)
    for i in range(buf.shape[0]):  # one frame of float at a time keeps 1080p batches small
        yuv = torch.stack([y[i].float() - 16.0,
                           u[i].float().repeat_interleave(2, 0).repeat_interleave(2, 1) - 128.0,
                           v[i].float().repeat_interleave(2, 0).repeat_interleave(2, 1) - 128.0], -1)
        out[i] = (yuv @ m.T).round_().clamp_(0, 255).to(torch.uint8)
    return out


def changed_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Even-aligned (x1, y1, x2, y2) around the pixels that differ in one frame, or None."""
    diff = (before != after).any(-1)
    rows = diff.any(1).nonzero()
    if rows.numel() == 0:
        return None
    cols = diff.any(0).nonzero()
    y1, y2 = int(rows[0]), int(rows[-1]) + 1
    x1, x2 = int(cols[0]), int(cols[-1]) + 1
    return x1 - x1 % 2, y1 - y1 % 2, x2 + x2 % 2, y2 + y2 % 2


def write_back(buf: np.ndarray, width: int, height: int, before: torch.Tensor, after: torch.Tensor) -> int:
    """Put the engine's changes into the yuv420p buffer in place; returns how many frames changed."""
    y, u, v = _planes(buf, width, height)
    m = _TO_YUV.to(after.device)
    changed = 0
    for i in range(after.shape[0]):
        box = changed_box(before[i], after[i])
        if box is None:
            continue
        changed += 1
        x1, y1, x2, y2 = box
        rgb = after[i, y1:y2, x1:x2].float()
        yuv = rgb @ m.T + torch.tensor([16.0, 128.0, 128.0], device=rgb.device)
        hit = (before[i, y1:y2, x1:x2] != after[i, y1:y2, x1:x2]).any(-1)
        luma = torch.where(hit, yuv[..., 0].round().clamp(0, 255).to(torch.uint8),
                           torch.from_numpy(y[i, y1:y2, x1:x2]).to(rgb.device))
        y[i, y1:y2, x1:x2] = luma.cpu().numpy()
        h2, w2 = (y2 - y1) // 2, (x2 - x1) // 2
        chroma = yuv[..., 1:].reshape(h2, 2, w2, 2, 2).mean((1, 3)).round().clamp(0, 255).to(torch.uint8)
        hit2 = hit.reshape(h2, 2, w2, 2).any(3).any(1)
        for plane, k in ((u, 0), (v, 1)):
            old = torch.from_numpy(plane[i, y1 // 2:y2 // 2, x1 // 2:x2 // 2]).to(rgb.device)
            plane[i, y1 // 2:y2 // 2, x1 // 2:x2 // 2] = torch.where(hit2, chroma[..., k], old).cpu().numpy()
    return changed
