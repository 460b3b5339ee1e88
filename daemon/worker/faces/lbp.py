"""scikit-image's bundled LBP frontal-face cascade: the largest face in a grey sample, tracked from
sample to sample, with sparser looks where none is seen."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from daemon.worker.faces.sampling import Analyse

LBP_BATCH = 64  # grey samples analysed together (4 MB at 320 px); a skipped run never crosses a batch
MAX_SKIP = 15  # samples skipped in a row while no face is seen (face_every 5: 3 s of video at 25 fps)
WINDOW = 24  # the LBP cascade's window: the smallest face it finds, in sample pixels
# the look near the last face (face_every frames later): that much of its size around it, at 0.6-1.6
# times its size; a face that moved further is found by the whole-picture search. 0.4 where it was 0.6:
# 35-40 % less time per sample on two test clips, no more whole-picture searches (bench/RESULTS.md)
NEAR_MARGIN = 0.4
NEAR_SIZES = (0.6, 1.6)
VERSION = 2  # in the face cache's key: boxes an earlier search found are not served for this one


@functools.lru_cache(maxsize=1)
def _cascade() -> Any:
    from skimage import data, feature

    return feature.Cascade(data.lbp_frontal_face_cascade_filename())  # type: ignore[no-untyped-call]


def detect(gray: np.ndarray, near: np.ndarray | None = None, search_all: bool = True) -> np.ndarray | None:
    """Largest face (x1, y1, x2, y2) in a float grey image; tries around `near` first, then (unless
    `search_all` is off) the whole picture."""
    if near is not None:
        x1, y1, x2, y2 = near
        size = max(x2 - x1, y2 - y1)
        m = int(size * NEAR_MARGIN)
        top, left = max(0, int(y1) - m), max(0, int(x1) - m)
        roi = gray[top:int(y2) + m, left:int(x2) + m]
        found = _largest(roi, max(WINDOW, int(size * NEAR_SIZES[0])), int(size * NEAR_SIZES[1]) + 1)
        if found is not None:
            shifted: np.ndarray = found + np.array([left, top, left, top])
            return shifted
    return _search(gray) if search_all else None


def _search(gray: np.ndarray) -> np.ndarray | None:
    """The whole picture, half resolution first: a face of 2·WINDOW pixels or more is found there for
    a quarter of the work and refined at full resolution around it; only if none is, the full
    resolution is searched for the small faces the half cannot see."""
    side = min(gray.shape)
    lo, hi = max(WINDOW, side // 10), int(side * 0.9)
    h, w = gray.shape[0] // 2 * 2, gray.shape[1] // 2 * 2
    half = gray[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    coarse = _largest(half, max(WINDOW, lo // 2), hi // 2)
    if coarse is not None:
        coarse = coarse * 2
        refined = detect(gray, coarse, search_all=False)
        return refined if refined is not None else coarse
    return _largest(gray, lo, min(hi, int(2 * WINDOW * 1.2)))


def _largest(gray: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    if min(gray.shape) < lo or hi < lo:
        return None
    found = _cascade().detect_multi_scale(img=gray, scale_factor=1.2, step_ratio=1, min_size=(lo, lo),
                                          max_size=(hi, hi))
    if not found:
        return None
    best = max(found, key=lambda d: d["width"] * d["height"])
    return np.array([best["c"], best["r"], best["c"] + best["width"], best["r"] + best["height"]], float)


def analyser() -> Analyse:
    """Tracks the face from sample to sample (the search starts around the last box). Where none is
    seen, samples are looked at sparser and sparser (1, 2, 4, ... then every 16th): a presenter without a
    detectable face cost a whole-picture search per sample. When a face appears, the samples skipped
    just before it are searched backwards around it, so its first frames keep their boxes."""
    near: np.ndarray | None = None  # "near the last face" restarts with each segment
    misses = 0  # samples looked at in a row without a face

    def analyse(frames: np.ndarray) -> np.ndarray:
        nonlocal near, misses
        out = np.full((len(frames), 4), np.nan)
        looked = -1  # the last sample of this batch looked at (before it: a known result)
        for j, frame in enumerate(frames):
            if near is None and j - looked <= _skip(misses) and j < len(frames) - 1:
                continue  # the batch's last sample is always looked at: no skipped run crosses batches
            found = detect(frame / 255.0, near)
            if found is not None and near is None:
                _back_fill(frames, out, looked + 1, j, found)
            misses = 0 if found is not None else misses + 1
            if found is not None:
                out[j] = found
            near, looked = found, j
        return out
    return analyse


def _skip(misses: int) -> int:
    """Samples to skip after `misses` looks in a row without a face: 0, 0, 1, 3, 7, 15, 15, ..."""
    return 0 if misses < 2 else min(MAX_SKIP, 2 ** (misses - 1) - 1)


def _back_fill(frames: np.ndarray, out: np.ndarray, first: int, found_at: int, box: np.ndarray) -> None:
    """Skipped samples first..found_at-1, searched backwards around the face found after them, until
    one has none (the face appeared there)."""
    near: np.ndarray | None = box
    for k in range(found_at - 1, first - 1, -1):
        near = detect(frames[k] / 255.0, near, search_all=False)
        if near is None:
            return
        out[k] = near
