"""The speech envelope: RMS energy of the 16 kHz track per video frame, read in blocks.

The track may be a read-only memory map of a long file; blocks are released behind the reader so the
resident set stays one block, not the whole recording (invariant 7: memory does not grow with length).
"""

from __future__ import annotations

import mmap

import numpy as np

RATE = 16000
_BLOCK_FRAMES = 250  # ~10 s of speech: the same temporaries for a 1-minute job as for a 30-minute one


def frame_rms(wav: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """RMS of the samples in each frame's slot [j/fps, (j+1)/fps); frames past the audio get 0."""
    out = np.zeros(n_frames, np.float32)
    edges = np.round(np.arange(n_frames + 1, dtype=np.float64) * RATE / fps).astype(np.int64)
    for a in range(0, n_frames, _BLOCK_FRAMES):
        b = min(n_frames, a + _BLOCK_FRAMES)
        lo, hi = int(edges[a]), min(int(edges[b]), len(wav))
        if lo >= hi:
            break
        block = np.asarray(wav[lo:hi], dtype=np.float64)
        sq = np.concatenate([[0.0], np.cumsum(block * block)])
        starts = np.clip(edges[a:b] - lo, 0, hi - lo)
        ends = np.clip(edges[a + 1:b + 1] - lo, 0, hi - lo)
        width = np.maximum(ends - starts, 1)
        out[a:b] = np.sqrt((sq[ends] - sq[starts]) / width)
        _release(wav, lo, hi)
    return out


def _release(wav: np.ndarray, lo: int, hi: int) -> None:
    """Drop the pages of a memory-mapped block we are done with (best effort, Linux only)."""
    mm = getattr(wav, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or not hasattr(mm, "madvise"):
        return
    page = mmap.PAGESIZE
    # np.memmap maps from its offset rounded down to the allocation granularity
    base = int(getattr(wav, "offset", 0)) % mmap.ALLOCATIONGRANULARITY
    start = -(-(base + lo * wav.itemsize) // page) * page
    end = (base + hi * wav.itemsize) // page * page
    if end > start:
        try:
            mm.madvise(mmap.MADV_DONTNEED, start, end - start)
        except (OSError, ValueError):
            pass
