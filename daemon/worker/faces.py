"""Where the presenter's face is, per source frame: scikit-image's bundled LBP cascade, or the engine's S3FD.

Detection runs on a small copy of every Nth frame, in contiguous segments decoded by their own ffmpeg
children and analysed by a thread pool (the cascade releases the GIL) while the video renders: the
renderer waits only for the short first segment. Boxes are median-smoothed and interpolated between
samples, and cached per source-file content hash (and detector) under <internal>/facecache/.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from daemon.core.config import MediaConfig
from daemon.core.errors import JobRejected
from daemon.worker.media import process
from daemon.worker.media.decoder import decode_argv, read_frames
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo

log = logging.getLogger(__name__)

NO_FACE = np.array([-1, -1, -1, -1], np.int32)
# a segment costs an ffmpeg start and a seek (decoding from the previous keyframe): segments grow from
# FIRST (what the first batches need: rendering waits for it) and stop growing at an even share per
# thread, but never stop below MIN
FIRST_SEGMENT_SAMPLES = 8
MIN_SEGMENT_SAMPLES = 40
RGB_BATCH = 32  # sampled RGB frames handed to the engine's detector at once (~30 MB at 480p)


class RgbDetector(Protocol):
    """A batch face detector for sampled RGB frames: the wav2lip engine's S3FD when configured."""

    name: str  # part of the cache key, and the box geometry the engine calibrates for ("s3fd")
    height: int  # samples are decoded at most this high (aspect kept)

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (N,H,W,3) → (N,4) float x1,y1,x2,y2 in those pixels; -1 rows: none."""
        ...


@functools.lru_cache(maxsize=1)
def _cascade():  # type: ignore[no-untyped-def]
    from skimage import data, feature

    return feature.Cascade(data.lbp_frontal_face_cascade_filename())


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def detect(gray: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
    """Largest face (x1, y1, x2, y2) in a float grey image; tries around `near` first."""
    if near is not None:
        x1, y1, x2, y2 = near
        size = max(x2 - x1, y2 - y1)
        m = int(size * 0.6)
        top, left = max(0, int(y1) - m), max(0, int(x1) - m)
        roi = gray[top:int(y2) + m, left:int(x2) + m]
        found = _largest(roi, max(24, int(size * 0.6)), int(size * 1.6) + 1)
        if found is not None:
            return found + np.array([left, top, left, top])
    side = min(gray.shape)
    return _largest(gray, max(24, side // 10), int(side * 0.9))


def _largest(gray: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    if min(gray.shape) < lo or hi < lo:
        return None
    found = _cascade().detect_multi_scale(img=gray, scale_factor=1.2, step_ratio=1, min_size=(lo, lo),
                                          max_size=(hi, hi))
    if not found:
        return None
    best = max(found, key=lambda d: d["width"] * d["height"])
    return np.array([best["c"], best["r"], best["c"] + best["width"], best["r"] + best["height"]], float)


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
    """media.face_threads, or (0) half the CPUs this process may use, 1 to 8."""
    if cfg.face_threads:
        return cfg.face_threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, min(8, cpus // 2))


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


Analyse = Callable[[np.ndarray], np.ndarray]  # (B, h, w[, 3]) uint8 samples → (B, 4) boxes, NaN = none


@dataclass(frozen=True)
class _Samples:
    """How a detector wants its samples decoded, and a fresh per-segment analyser (it may track state)."""

    width: int
    height: int
    pix_fmt: str  # "gray" | "rgb24"
    batch: int
    analyser: Callable[[], Analyse]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.pix_fmt == "gray" else (self.height, self.width, 3)


def _lbp_analyser() -> Analyse:
    near: np.ndarray | None = None  # "near the last face" restarts with each segment

    def analyse(frames: np.ndarray) -> np.ndarray:
        nonlocal near
        out = np.full((len(frames), 4), np.nan)
        for j, frame in enumerate(frames):
            found = detect(frame / 255.0, near)
            if found is not None:
                out[j] = found
            near = found
        return out
    return analyse


def _rgb_analyser(detector: RgbDetector, lock: threading.Lock) -> Analyse:
    def analyse(frames: np.ndarray) -> np.ndarray:
        with lock:  # one detector (one GPU, a batch size it adapts on OOM): segments take turns
            boxes = np.array(detector.detect(frames), dtype=np.float64).reshape(-1, 4)
        boxes[boxes[:, 0] < 0] = np.nan
        return boxes
    return analyse


class FaceFinder:
    """Face boxes for the source frames a plan uses, cached per content hash and detector."""

    def __init__(self, cfg: MediaConfig, cache_dir: Path, detector: RgbDetector | None = None) -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir
        self.detector = detector

    @property
    def geometry(self) -> str:
        """Which detector's box geometry `boxes` returns: "lbp" or the RGB detector's name."""
        return self.detector.name if self.detector is not None else "lbp"

    def boxes(self, info: MediaInfo, plan: Plan) -> tuple[np.ndarray, bool]:
        """(K, 4) int32 boxes in output pixels for source frames 0..K-1, and whether it was cached."""
        faces = self.start(info, plan)
        try:
            return faces.until(faces.count).copy(), faces.cached
        finally:
            faces.close()

    def start(self, info: MediaInfo, plan: Plan) -> FacePass:
        """The analysis of `info` running in the background (or its cached result); see FacePass."""
        count = min(plan.source_frames, plan.frames)
        every = self.cfg.face_every
        how = self._samples(plan)
        # LBP keys are unchanged from the serial pass (its boxes differ only in where tracking restarts);
        # any other detector names itself and its decode height, so no entry serves another detector
        tail = f"s{self.cfg.face_max_side}" if self.detector is None else f"{self.geometry}-h{how.height}"
        key = f"{content_hash(info.path)}-{plan.fps_num}_{plan.fps_den}-{plan.width}x{plan.height}-e{every}-{tail}"
        cached = self.cache_dir / f"{key}.npy"
        if cached.exists():
            data = np.load(cached)
            if len(data) >= count:
                return FacePass.done(data[:count])
        return FacePass(self, info, plan, how, count, cached)

    def _samples(self, plan: Plan) -> _Samples:
        if self.detector is None:
            scale = min(1.0, self.cfg.face_max_side / max(plan.width, plan.height))
            sw, sh = max(2, int(plan.width * scale) // 2 * 2), max(2, int(plan.height * scale) // 2 * 2)
            return _Samples(sw, sh, "gray", 1, _lbp_analyser)
        sh = max(2, min(plan.height, self.detector.height) // 2 * 2)
        sw = max(2, round(plan.width * sh / plan.height) // 2 * 2)
        lock, detector = threading.Lock(), self.detector
        return _Samples(sw, sh, "rgb24", RGB_BATCH, lambda: _rgb_analyser(detector, lock))

    def _segment(self, info: MediaInfo, small: Plan, how: _Samples, part: tuple[int, int], every: int,
                 stop: threading.Event) -> tuple[np.ndarray, int]:
        """Samples a..b-1 (source frames a·every, ...) from one decoder seeked to frame a·every."""
        a, b = part
        argv = decode_argv(self.cfg, info, small, a * every, small.source_frames - a * every)
        vf = argv.index("-vf") + 1
        # select counts frames from the seek point, which is a multiple of `every`: sample k stays k·every.
        # It runs after fps (indices are output frames) and before scale: scaling is per frame, so the
        # samples are the same pixels, and the other frames are never scaled (measured: 6.3 → 4.8 s for
        # 60 s of 1080p at face_every 5 on the 2-core dev box)
        argv[vf] = (argv[vf].replace("scale=", f"select=not(mod(n\\,{every})),scale=", 1)
                    .replace("format=yuv420p", f"format={how.pix_fmt}"))
        argv[argv.index("-frames:v") + 1] = str(b - a)
        argv[argv.index("-pix_fmt") + 1] = how.pix_fmt
        samples = np.full((b - a, 4), np.nan)
        frames = np.empty((how.batch, *how.shape), np.uint8)
        analyse = how.analyser()
        done = 0
        with process.Child(argv, stdout=True, pipe_size=self.cfg.pipe_bytes, name="ffmpeg-faces") as child:
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

    def _ended_early(self, info: MediaInfo, plan: Plan, reached: int) -> None:
        """A segment's decoder ended before source frame `reached`: FrameSource's rule (decoder.py) — a
        shortfall within the container's overstatement is normal, anything more is a cut-off file."""
        tolerance = max(3, round(plan.fps / 2))
        if reached >= plan.source_frames - tolerance:
            return
        if reached == 0:
            codec = info.video.codec if info.video else "unknown"
            raise JobRejected("media_unreadable", name=info.path.name,
                              detail=f"its picture ({codec}) cannot be decoded by this appliance")
        raise JobRejected("video_truncated", name=info.path.name, got=reached, expected=plan.source_frames,
                          size=f"{info.size / 1e6:.1f} MB")


class FacePass:
    """One video's face analysis, running ahead of the renderer: `until(n)` waits until boxes of source
    frames 0..n-1 are final (a short first segment, then the pool works ahead in parallel), so
    rendering starts after the first segment instead of after the whole video. Errors of any segment
    are raised by `until` with their type; `close()` stops the pool and ends its children."""

    def __init__(self, finder: FaceFinder | None, info: MediaInfo | None, plan: Plan | None,
                 how: _Samples | None, count: int, cache: Path | None) -> None:
        self.count = count
        self.cached = finder is None
        self.boxes = np.full((count, 4), -1, np.int32)
        self.final = 0
        self._finder, self._info, self._plan, self._how, self._cache = finder, info, plan, how, cache
        self._started = time.monotonic()
        self._stop = threading.Event()  # set on the first error or on close: the other segments end early
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[tuple[np.ndarray, int]]] = []
        if finder is None or plan is None or how is None:
            return
        self._every = finder.cfg.face_every
        self._wanted = math.ceil(count / self._every)
        self._samples = np.full((self._wanted, 4), np.nan)
        self._prefix = 0  # samples[:prefix] are in
        self._small = Plan(**{**plan.to_json(), "width": how.width, "height": how.height, "deinterlace": False})
        self._parts = segments(self._wanted, face_threads(finder.cfg))
        self._pool = ThreadPoolExecutor(face_threads(finder.cfg), thread_name_prefix="faces")
        self._futures = [self._pool.submit(self._run, part) for part in self._parts]

    @classmethod
    def done(cls, boxes: np.ndarray) -> FacePass:
        """A pass whose boxes came from the cache."""
        faces = cls(None, None, None, None, len(boxes), None)
        faces.boxes[:] = boxes
        faces.final = len(boxes)
        return faces

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
        assert self._finder is not None and self._info is not None and self._how is not None
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
            assert self._finder is not None and self._info is not None and self._plan is not None
            self._finder._ended_early(self._info, self._plan, (a + got) * self._every)
        self._samples[a:b] = got_samples
        self._prefix = b
        fixed = final_rows(self._prefix, self._wanted, self._every, self.count)
        rows = smooth_range(self._samples[:self._prefix], self._every, self.final, fixed)
        self.boxes[self.final:fixed] = self._to_output(rows)
        self.final = fixed
        if fixed == self.count:
            self._save()

    def _to_output(self, rows: np.ndarray) -> np.ndarray:
        """Sample-pixel boxes → output pixels, int32, -1 rows where no face."""
        assert self._plan is not None and self._how is not None
        plan, how = self._plan, self._how
        present = rows[:, 0] >= 0
        rows[present] *= np.array([plan.width / how.width, plan.height / how.height] * 2)
        out = np.where(present[:, None], np.round(rows), -1).astype(np.int32)
        out[present, 2] = np.minimum(out[present, 2], plan.width)
        out[present, 3] = np.minimum(out[present, 3], plan.height)
        return out

    def _save(self) -> None:
        assert self._cache is not None and self._info is not None and self._finder is not None
        self._cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._cache.with_name(f".{self._cache.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, self.boxes)
        os.replace(tmp, self._cache)
        log.info("%s: faces (%s) in %d frames analysed in %.1f s (%d without a face)", self._info.path.name,
                 self._finder.geometry, self.count, time.monotonic() - self._started,
                 int((self.boxes[:, 0] < 0).sum()))
