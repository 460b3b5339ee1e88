"""One video's face analysis running ahead of the renderer: samples decoded and analysed in growing
segments by a pool, rows of boxes final as the samples their smoothing reads arrive.

The renderer asks `until(n)` before a batch; segments are analysed in the order rendering needs them
(segments.py), each by its own seeked ffmpeg child (`decode_segment`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from daemon.core.config import MediaConfig
from daemon.worker.faces.cache import Entry
from daemon.worker.faces.sampling import Samples
from daemon.worker.faces.segments import final_rows, segments, smooth_range
from daemon.worker.media import boxes, process
from daemon.worker.media.cores import split
from daemon.worker.media.decoder import Sampling, decode_argv, read_frames
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo
from daemon.worker.media.shortfall import cut_off, tolerance

log = logging.getLogger(__name__)


def face_threads(cfg: MediaConfig) -> int:
    """media.face_threads, or (0) the share of the cores the encoders leave (media/cores.py), 1 to 8."""
    return split(cfg).face_threads


def decode_segment(cfg: MediaConfig, info: MediaInfo, plan: Plan, how: Samples, part: tuple[int, int],
                   every: int, stop: threading.Event) -> tuple[np.ndarray, int]:
    """Samples a..b-1 (source frames a·every, ...) analysed, from one decoder seeked to frame a·every;
    and how many were decoded (fewer: the decoder ended early, or `stop` was set)."""
    a, b = part
    # the decoder seeks to a multiple of `every` and keeps every Nth frame: sample k is frame k·every
    sampling = Sampling(every, how.width, how.height, how.pix_fmt, nonref=True)
    argv = decode_argv(cfg, info, plan, a * every, b - a, sampling, threads=split(cfg).face_decoder_threads)
    samples = np.full((b - a, 4), np.nan)
    frames = np.empty((how.batch, *how.shape), np.uint8)
    analyse = how.analyser()
    done = 0
    with process.Child(argv, stdout=True, pipe_size=cfg.pipe_bytes, name="ffmpeg-faces",
                       box=boxes.for_decoder(cfg, info, plan)) as child:
        while done < b - a and not stop.is_set():
            n = min(how.batch, b - a - done)
            got = read_frames(child, frames[:n]) // frames[0].nbytes
            if got:
                samples[done:done + got] = analyse(frames[:got])
            done += got
            if got < n:
                break
        if done < b - a:
            child.close(force=True)  # stopped early: do not wait for the child to notice
    return samples, done


class FacePass:
    """One video's face analysis, running ahead of the renderer: `until(n)` waits until boxes of source
    frames 0..n-1 are final (a short first segment, then the pool works ahead in parallel), so
    rendering starts after the first segment instead of after the whole video. Errors of any segment
    are raised by `until` with their type; `close()` stops the pool and ends its children."""

    def __init__(self, cfg: MediaConfig, info: MediaInfo, plan: Plan, how: Samples, count: int, cache: Entry,
                 geometry: str, cached: np.ndarray | None = None) -> None:
        """Starts the analysis, or (with `cached`, boxes read from `cache`) is complete at once."""
        self.count = count
        self.cached = cached is not None
        self.boxes = np.full((count, 4), -1, np.int32) if cached is None else cached
        self.final = 0 if cached is None else count
        self._cfg, self._info, self._plan, self._how, self._cache = cfg, info, plan, how, cache
        self._geometry = geometry
        self._started = time.monotonic()
        self._stop = threading.Event()  # set on the first error or on close: the other segments end early
        self._every = cfg.face_every
        self._wanted = math.ceil(count / self._every)
        self._samples = np.full((self._wanted, 4), np.nan)
        threads = face_threads(cfg)
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
            return decode_segment(self._cfg, self._info, self._plan, self._how, part, self._every, self._stop)
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
            self._ended_early((a + got) * self._every)
        self._samples[a:b] = got_samples  # segments come in order: samples[:b] are all in now
        fixed = final_rows(b, self._wanted, self._every, self.count)
        rows = smooth_range(self._samples[:b], self._every, self.final, fixed)
        self.boxes[self.final:fixed] = self._to_output(rows)
        self.final = fixed
        if fixed == self.count:
            self._save()

    def _ended_early(self, reached: int) -> None:
        """A segment's decoder ended before source frame `reached`: FrameSource's rule (shortfall.py) — a
        shortfall within the container's overstatement is normal, anything more is a cut-off file (or
        the share failing under us)."""
        expected = self._plan.source_frames
        if reached < expected - tolerance(self._plan):
            cut_off(self._info, reached, expected)

    def _save(self) -> None:
        self._cache.save(self.boxes)
        log.info("%s: faces (%s) in %d frames analysed in %.1f s (%d without a face)", self._info.path.name,
                 self._geometry, self.count, time.monotonic() - self._started,
                 int((self.boxes[:, 0] < 0).sum()))

    def _to_output(self, rows: np.ndarray) -> np.ndarray:
        """Sample-pixel boxes → output pixels, int32, -1 rows where no face."""
        plan, how = self._plan, self._how
        present = rows[:, 0] >= 0
        rows[present] *= np.array([plan.width / how.width, plan.height / how.height] * 2)
        out = np.where(present[:, None], np.round(rows), -1).astype(np.int32)
        out[present, 2] = np.minimum(out[present, 2], plan.width)
        out[present, 3] = np.minimum(out[present, 3], plan.height)
        return out
