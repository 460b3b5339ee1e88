"""yuv420p pipe buffers ⇄ RGB uint8 tensors on the engine's device (the one torch module the pipeline uses).

Frames cross the ffmpeg pipes as yuv420p (rgb24 pipes cost 1.7–2.3× a plain transcode, reference/media.md
§9) and only the face region of a batch is converted to RGB (`face_region`). Going back, only pixels the
engine changed are re-encoded into the planes: everything else keeps its original Y/U/V bytes, so
untouched pixels are bit-exact before the encoder.
"""

from __future__ import annotations

import numpy as np
import torch

# BT.601 limited range, the matrix swscale uses for our yuv420p when none is tagged. Written as
# per-channel sums (a (…,3)@(3,3) matmul is ~10× slower on CPU for these shapes).
_KY, _KRV, _KGU, _KGV, _KBU = 1.164, 1.596, -0.392, -0.813, 2.017
# margins around the union of a batch's face boxes, in box sizes: the lower face and jaw need room below
_SIDE, _ABOVE, _BELOW = 0.5, 0.3, 0.9

Region = tuple[int, int, int, int]  # x1, y1, x2, y2, all even


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def share_cpu(threads: int = 1) -> None:
    """Keep torch to `threads` intra-op threads while ffmpeg children decode and encode.

    On a CPU (measured on 2 cores, bench/RESULTS.md): with torch's default (one OpenMP thread per core)
    the warp stage of a 1080p clip took 20-27 s for 500 frames, spinning against the x264 threads; with 1
    thread 2.4-3.7 s. On a GPU box the host's torch work is copies and index tensors, and an OpenMP pool
    that wakes for one spins on every core after it. A process-wide setting, so it is applied once, by
    the renderer that owns the pipes.
    """
    torch.set_num_threads(threads)


def face_region(boxes: np.ndarray, width: int, height: int) -> Region | None:
    """Even-aligned region around every face in a batch (with margins), or None when there is none."""
    valid = boxes[(boxes[:, 0] >= 0) & (boxes[:, 2] > boxes[:, 0])]
    if valid.size == 0:
        return None
    bw = float((valid[:, 2] - valid[:, 0]).max())
    bh = float((valid[:, 3] - valid[:, 1]).max())
    x1 = max(0, int(valid[:, 0].min() - _SIDE * bw))
    y1 = max(0, int(valid[:, 1].min() - _ABOVE * bh))
    x2 = min(width, int(valid[:, 2].max() + _SIDE * bw) + 1)
    y2 = min(height, int(valid[:, 3].max() + _BELOW * bh) + 1)
    return x1 - x1 % 2, y1 - y1 % 2, x2 + x2 % 2, y2 + y2 % 2


def _planes(buf: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = buf.shape[0]
    ys = width * height
    cs = ys // 4
    y = buf[:, :ys].reshape(n, height, width)
    u = buf[:, ys:ys + cs].reshape(n, height // 2, width // 2)
    v = buf[:, ys + cs:ys + 2 * cs].reshape(n, height // 2, width // 2)
    return y, u, v


def _group(pixels: int, device: torch.device) -> int:
    """Frames per vectorised step: float temporaries of ~100 MB on a GPU, ~one frame (cache-sized) on a CPU."""
    budget = 8_000_000 if device.type == "cuda" else 250_000
    return max(1, budget // max(1, pixels))


class _Staging:
    """One pinned host buffer per process for uploads to a CUDA device, grown to the largest batch.

    A batch's three face-region planes are gathered into it and cross in one copy: pinned memory is
    read by the GPU's DMA engine directly, pageable memory is first staged by the driver (three uploads
    were three such round trips per batch). Only the render loop's thread uploads frames, and the copy
    is synchronous, so the buffer is free again when `upload` returns.
    """

    def __init__(self) -> None:
        self._host: torch.Tensor | None = None

    def upload(self, parts: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
        total = sum(p.size for p in parts)
        if self._host is None or self._host.numel() < total:
            self._host = torch.empty(max(total, 1), dtype=torch.uint8).pin_memory()
        flat = self._host.numpy()
        at = 0
        for part in parts:
            np.copyto(flat[at:at + part.size].reshape(part.shape), part)
            at += part.size
        on_device = self._host[:total].to(device)
        out, at = [], 0
        for part in parts:
            out.append(on_device[at:at + part.size].view(part.shape))
            at += part.size
        return out


_STAGING = _Staging()


def _upload(parts: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Host arrays (strided views allowed) → contiguous uint8 tensors on `device`, one transfer on CUDA."""
    if device.type == "cuda":
        return _STAGING.upload(parts, device)
    return [torch.from_numpy(np.ascontiguousarray(p)).to(device) for p in parts]


def to_rgb(buf: np.ndarray, width: int, height: int, device: torch.device,
           region: Region | None = None) -> torch.Tensor:
    """(N, frame_bytes) yuv420p → (N, h, w, 3) uint8 RGB on `device`, of `region` (default: whole)."""
    x1, y1, x2, y2 = region or (0, 0, width, height)
    y, u, v = _planes(buf, width, height)
    ys, us, vs = _upload([y[:, y1:y2, x1:x2], u[:, y1 // 2:y2 // 2, x1 // 2:x2 // 2],
                          v[:, y1 // 2:y2 // 2, x1 // 2:x2 // 2]], device)
    n, h, w = ys.shape
    h2, w2 = h // 2, w // 2
    out = torch.empty((n, h, w, 3), dtype=torch.uint8, device=device)
    step = _group(h * w, device)
    for a in range(0, n, step):  # a group of frames per kernel, not one frame: far fewer launches
        b = min(n, a + step)
        luma = (ys[a:b].float() - 16.0).mul_(_KY).view(b - a, h2, 2, w2, 2)
        cu = (us[a:b].float() - 128.0).view(b - a, h2, 1, w2, 1)  # chroma covers its 2×2 luma block
        cv = (vs[a:b].float() - 128.0).view(b - a, h2, 1, w2, 1)
        chans = [(luma + term).round_().clamp_(0, 255).to(torch.uint8).view(b - a, h, w)
                 for term in (_KRV * cv, _KGU * cu + _KGV * cv, _KBU * cu)]
        torch.stack(chans, -1, out=out[a:b])
    return out


def write_back(buf: np.ndarray, width: int, height: int, before: torch.Tensor, after: torch.Tensor,
               region: Region | None = None) -> int:
    """Put the engine's changes (RGB of `region`) into the yuv420p buffer in place; frames changed.

    Only changed pixels get new luma, only 2×2 blocks with a changed pixel get new chroma (the mean of
    the block's four RGB values); every other byte keeps its decoded value. The work is batched on the
    frames' device: one small download says which frames, rows and columns changed, then one download
    per group of frames brings the new planes and their change masks back together.
    """
    ox, oy = (region or (0, 0, width, height))[:2]
    hit = (before != after).any(-1)  # (N, h, w)
    n, h, _ = hit.shape
    anywhere = hit.any(0)
    summary = torch.cat([hit.flatten(1).any(1), anywhere.any(1), anywhere.any(0)]).cpu().numpy()
    changed = np.flatnonzero(summary[:n])
    if changed.size == 0:
        return 0
    x1, y1, x2, y2 = _even_box(summary[n:n + h], summary[n + h:])
    y, u, v = _planes(buf, width, height)
    step = _group((y2 - y1) * (x2 - x1), after.device)
    cy, cx = (oy + y1) // 2, (ox + x1) // 2
    for a in range(0, changed.size, step):
        rows = changed[a:a + step]
        idx = torch.from_numpy(rows).to(after.device)
        luma, cb, cr, hit1, hit2 = _to_yuv(after[idx, y1:y2, x1:x2], hit[idx, y1:y2, x1:x2])
        h2, w2 = hit2.shape[1:]
        for k, i in enumerate(rows):
            np.copyto(y[i, oy + y1:oy + y2, ox + x1:ox + x2], luma[k], where=hit1[k])
            np.copyto(u[i, cy:cy + h2, cx:cx + w2], cb[k], where=hit2[k])
            np.copyto(v[i, cy:cy + h2, cx:cx + w2], cr[k], where=hit2[k])
    return int(changed.size)


def _even_box(rows: np.ndarray, cols: np.ndarray) -> tuple[int, int, int, int]:
    """Even-aligned (x1, y1, x2, y2) around the true entries of a row mask and a column mask."""
    ry, rx = np.flatnonzero(rows), np.flatnonzero(cols)
    y1, y2, x1, x2 = int(ry[0]), int(ry[-1]) + 1, int(rx[0]), int(rx[-1]) + 1
    return x1 - x1 % 2, y1 - y1 % 2, x2 + x2 % 2, y2 + y2 % 2


def _to_yuv(rgb8: torch.Tensor, hit: torch.Tensor) -> tuple[np.ndarray, ...]:
    """(G,h,w,3) uint8 RGB with even h, w → Y, U, V planes as uint8 arrays and where each changed
    (computed on the device, brought back in one transfer)."""
    rgb = rgb8.float()
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = (16.0 + 0.257 * r + 0.504 * g + 0.098 * b).round_().clamp_(0, 255).to(torch.uint8)
    # chroma is one sample per 2×2 block: the mean of the block, summed in a fixed order
    mean = (rgb[:, 0::2, 0::2] + rgb[:, 0::2, 1::2] + rgb[:, 1::2, 0::2] + rgb[:, 1::2, 1::2]) * 0.25
    r, g, b = mean[..., 0], mean[..., 1], mean[..., 2]
    cb = (128.0 - 0.148 * r - 0.291 * g + 0.439 * b).round_().clamp_(0, 255).to(torch.uint8)
    cr = (128.0 + 0.439 * r - 0.368 * g - 0.071 * b).round_().clamp_(0, 255).to(torch.uint8)
    hit2 = hit[:, 0::2, 0::2] | hit[:, 0::2, 1::2] | hit[:, 1::2, 0::2] | hit[:, 1::2, 1::2]
    parts = (luma, cb, cr, hit.to(torch.uint8), hit2.to(torch.uint8))
    flat = torch.cat([p.flatten(1) for p in parts], 1).cpu().numpy()
    out, at = [], 0
    for p in parts:
        size = p[0].numel()
        out.append(flat[:, at:at + size].reshape(p.shape))
        at += size
    return out[0], out[1], out[2], out[3].view(bool), out[4].view(bool)
