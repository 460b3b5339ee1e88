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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from daemon.core.config import MediaConfig
from daemon.core.errors import JobRejected
from daemon.worker.facepass import FacePass
from daemon.worker.media import box, process
from daemon.worker.media.decoder import decode_argv, read_frames
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo

log = logging.getLogger(__name__)

NO_FACE = np.array([-1, -1, -1, -1], np.int32)
RGB_BATCH = 32  # sampled RGB frames handed to the engine's detector at once (~30 MB at 480p)
LBP_BATCH = 64  # grey samples analysed together (4 MB at 320 px); a skipped run never crosses a batch
MAX_SKIP = 15  # samples skipped in a row while no face is seen (face_every 5: 3 s of video at 25 fps)
WINDOW = 24  # the LBP cascade's window: the smallest face it finds, in sample pixels


class RgbDetector(Protocol):
    """A batch face detector for sampled RGB frames: the wav2lip engine's S3FD when configured."""

    name: str  # part of the cache key, and the box geometry the engine calibrates for ("s3fd")
    height: int  # samples are decoded at most this high (aspect kept)

    def detect(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (N,H,W,3) → (N,4) float x1,y1,x2,y2 in those pixels; -1 rows: none."""
        ...


@functools.lru_cache(maxsize=1)
def _cascade() -> Any:
    from skimage import data, feature

    return feature.Cascade(data.lbp_frontal_face_cascade_filename())  # type: ignore[no-untyped-call]


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def detect(gray: np.ndarray, near: np.ndarray | None = None, search_all: bool = True) -> np.ndarray | None:
    """Largest face (x1, y1, x2, y2) in a float grey image; tries around `near` first, then (unless
    `search_all` is off) the whole picture."""
    if near is not None:
        x1, y1, x2, y2 = near
        size = max(x2 - x1, y2 - y1)
        m = int(size * 0.6)
        top, left = max(0, int(y1) - m), max(0, int(x1) - m)
        roi = gray[top:int(y2) + m, left:int(x2) + m]
        found = _largest(roi, max(24, int(size * 0.6)), int(size * 1.6) + 1)
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
        # an LBP key names only the sample size: boxes found in segments differ from a whole-video pass
        # only in where tracking restarts, so one key serves both; any other detector names itself and
        # its decode height, so no entry serves another detector
        tail = f"s{self.cfg.face_max_side}" if self.detector is None else f"{self.geometry}-h{how.height}"
        crop = "-c" + "_".join(map(str, plan.crop)) if plan.crop else ""  # same size, other region
        size = f"{plan.width}x{plan.height}{crop}"
        key = f"{content_hash(info.path)}-{plan.fps_num}_{plan.fps_den}-{size}-e{every}-{tail}"
        path = self.cache_dir / f"{key}.npy"
        if path.exists():
            data = np.load(path)
            if len(data) >= count:
                return FacePass(self, info, plan, how, count, path, cached=data[:count])
        return FacePass(self, info, plan, how, count, path)

    def _samples(self, plan: Plan) -> _Samples:
        if self.detector is None:
            scale = min(1.0, self.cfg.face_max_side / max(plan.width, plan.height))
            sw, sh = max(2, int(plan.width * scale) // 2 * 2), max(2, int(plan.height * scale) // 2 * 2)
            return _Samples(sw, sh, "gray", LBP_BATCH, _lbp_analyser)
        sh = max(2, min(plan.height, self.detector.height) // 2 * 2)
        sw = max(2, round(plan.width * sh / plan.height) // 2 * 2)
        lock, detector = threading.Lock(), self.detector
        return _Samples(sw, sh, "rgb24", RGB_BATCH, lambda: _rgb_analyser(detector, lock))

    def _segment(self, info: MediaInfo, small: Plan, how: _Samples, part: tuple[int, int], every: int,
                 stop: threading.Event) -> tuple[np.ndarray, int]:
        """Samples a..b-1 (source frames a·every, ...) from one decoder seeked to frame a·every."""
        a, b = part
        # the decoder seeks to a multiple of `every` and keeps every Nth frame: sample k is frame k·every
        argv = decode_argv(self.cfg, info, small, a * every, b - a, every=every, pix_fmt=how.pix_fmt)
        samples = np.full((b - a, 4), np.nan)
        frames = np.empty((how.batch, *how.shape), np.uint8)
        analyse = how.analyser()
        done = 0
        with process.Child(argv, stdout=True, pipe_size=self.cfg.pipe_bytes, name="ffmpeg-faces",
                           box=box.for_decoder(self.cfg, info, small)) as child:
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
