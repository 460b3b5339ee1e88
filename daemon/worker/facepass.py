"""A face analysis running ahead of the renderer: samples in growing segments, rows final as they arrive.

The renderer asks `until(n)` before a batch; segments are analysed by a pool in the order rendering needs
them, and a row of boxes is final once the samples its smoothing reads are in (`final_rows`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from daemon.core.config import MediaConfig
from daemon.worker.media.cores import split
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo

if TYPE_CHECKING:
    from daemon.worker.faces import FaceFinder, _Samples

log = logging.getLogger(__name__)

# a segment costs an ffmpeg start and a seek (decoding from the previous keyframe): segments grow from
# FIRST (what the first batches need: rendering waits for it) and stop growing at an even share per
# thread, but never stop below MIN
FIRST_SEGMENT_SAMPLES = 8
MIN_SEGMENT_SAMPLES = 40


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


def face_threads(cfg: MediaConfig) -> int:
    """media.face_threads, or (0) the share of the cores the encoders leave (media/cores.py), 1 to 8."""
    return split(cfg).face_threads


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


class FacePass:
    """One video's face analysis, running ahead of the renderer: `until(n)` waits until boxes of source
    frames 0..n-1 are final (a short first segment, then the pool works ahead in parallel), so
    rendering starts after the first segment instead of after the whole video. Errors of any segment
    are raised by `until` with their type; `close()` stops the pool and ends its children."""

    def __init__(self, finder: FaceFinder, info: MediaInfo, plan: Plan, how: _Samples, count: int, cache: Path,
                 cached: np.ndarray | None = None) -> None:
        """Starts the analysis, or (with `cached`, boxes read from `cache`) is complete at once."""
        self.count = count
        self.cached = cached is not None
        self.boxes = np.full((count, 4), -1, np.int32) if cached is None else cached
        self.final = 0 if cached is None else count
        self._finder, self._info, self._plan, self._how, self._cache = finder, info, plan, how, cache
        self._started = time.monotonic()
        self._stop = threading.Event()  # set on the first error or on close: the other segments end early
        self._every = finder.cfg.face_every
        self._wanted = math.ceil(count / self._every)
        self._samples = np.full((self._wanted, 4), np.nan)
        self._small = Plan(**{**plan.to_json(), "width": how.width, "height": how.height, "deinterlace": False})
        threads = face_threads(finder.cfg)
        self._parts = [] if cached is not None else segments(self._wanted, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[tuple[np.ndarray, int]]] = []
        if self._parts:
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="faces")
            self._futures = [self._pool.submit(self._run, part) for part in self._parts]

    def until(self, frames: int) -> np.ndarray:
        """`boxes` once rows 0..min(frames, count)-1 are final (it waits for the segments they need)."""
        while self.final < min(frames, self.count):
            self._take(len(self._parts) - len(self._futures))
        return self.boxes

    def close(self) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # joins every thread: children closed

    def _run(self, part: tuple[int, int]) -> tuple[np.ndarray, int]:
        try:
            return self._finder._segment(self._info, self._small, self._how, part, self._every, self._stop)
        except BaseException:
            self._stop.set()
            raise

    def _take(self, index: int) -> None:
        """Wait for segment `index` (the next in order), add its samples and the rows they fix."""
        a, b = self._parts[index]
        got_samples, got = self._futures.pop(0).result()  # re-raises a segment's error in this thread
        if got < b - a:
            if self._stop.is_set():  # cut short because another segment failed: raise that one
                self.close()
                for future in self._futures:
                    future.result()
            self._finder._ended_early(self._info, self._plan, (a + got) * self._every)
        self._samples[a:b] = got_samples  # segments come in order: samples[:b] are all in now
        fixed = final_rows(b, self._wanted, self._every, self.count)
        rows = smooth_range(self._samples[:b], self._every, self.final, fixed)
        self.boxes[self.final:fixed] = self._to_output(rows)
        self.final = fixed
        if fixed == self.count:
            self._save()

    def _to_output(self, rows: np.ndarray) -> np.ndarray:
        """Sample-pixel boxes → output pixels, int32, -1 rows where no face."""
        plan, how = self._plan, self._how
        present = rows[:, 0] >= 0
        rows[present] *= np.array([plan.width / how.width, plan.height / how.height] * 2)
        out = np.where(present[:, None], np.round(rows), -1).astype(np.int32)
        out[present, 2] = np.minimum(out[present, 2], plan.width)
        out[present, 3] = np.minimum(out[present, 3], plan.height)
        return out

    def _save(self) -> None:
        self._cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cache.with_name(f".{self._cache.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, self.boxes)
        os.replace(tmp, self._cache)
        log.info("%s: faces (%s) in %d frames analysed in %.1f s (%d without a face)", self._info.path.name,
                 self._finder.geometry, self.count, time.monotonic() - self._started,
                 int((self.boxes[:, 0] < 0).sum()))
