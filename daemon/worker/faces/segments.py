"""The face pass's pure arithmetic: which contiguous sample ranges the pool analyses, in what order,
how samples become per-frame boxes (median, interpolation), and which rows a prefix of them fixes."""

from __future__ import annotations

import numpy as np

# a segment costs an ffmpeg start and a seek (decoding from the previous keyframe): segments grow from
# FIRST (what the first batches need: rendering waits for it) and stop growing at an even share per
# thread, but never stop below MIN
FIRST_SEGMENT_SAMPLES = 8
MIN_SEGMENT_SAMPLES = 40


def segments(wanted: int, threads: int) -> list[tuple[int, int]]:
    """Contiguous sample ranges [a, b) covering [0, wanted), in the order rendering needs them.

    The first is short (rendering starts once it is in) and each next one twice as long, so every
    segment is analysed before rendering reaches it while the pool runs them side by side; sizes stop
    growing at an even share per thread, and no tail is left shorter than the segment before it.
    """
    cap = max(MIN_SEGMENT_SAMPLES, -(-wanted // max(1, threads)))
    bounds, size = [0], FIRST_SEGMENT_SAMPLES
    while bounds[-1] < wanted:
        step = min(size, cap)
        left = wanted - bounds[-1]
        bounds.append(bounds[-1] + (left if left < 2 * step else step))
        size *= 2
    return list(zip(bounds[:-1], bounds[1:], strict=True)) or [(0, 0)]


def smooth(samples: np.ndarray, every: int, count: int) -> np.ndarray:
    """(S, 4) sample boxes (NaN = none) → (count, 4) per-frame boxes, -1 rows where no face."""
    return smooth_range(samples, every, 0, count)


def smooth_range(samples: np.ndarray, every: int, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of `smooth`. Row i reads samples up to i // every + 2 only, so rows computed
    from a prefix of the samples that long equal the rows computed from all of them."""
    def median(k: int) -> np.ndarray:  # of 3 neighbours where all are faces: kills single-sample jitter
        window = samples[max(0, k - 1):k + 2]
        if not np.isnan(window).any() and len(window) == 3:
            return np.median(window, axis=0)  # type: ignore[no-any-return]
        return samples[k]  # type: ignore[no-any-return]

    out = np.full((stop - start, 4), -1.0)
    for i in range(start, stop):
        k0 = min(i // every, len(samples) - 1)
        k1 = min(k0 + 1, len(samples) - 1)
        t = (i - k0 * every) / every
        a, b = median(k0), median(k1)
        if not np.isnan(a).any() and not np.isnan(b).any():
            out[i - start] = a + (b - a) * min(t, 1.0)
        elif not np.isnan(a).any() and t < 0.5:
            out[i - start] = a
        elif not np.isnan(b).any() and t >= 0.5:
            out[i - start] = b
    return out


def final_rows(prefix: int, wanted: int, every: int, count: int) -> int:
    """How many rows of `smooth` a prefix of `prefix` of the `wanted` samples fixes for good."""
    return count if prefix >= wanted else min(count, max(0, (prefix - 2) * every))
