"""Where the presenter's face is, per source frame: scikit-image's bundled LBP cascade, no downloads.

Detection runs on a small grey copy of every Nth frame (its own low-resolution ffmpeg decode), near the
last face first and on the whole frame when that fails; boxes are median-smoothed and interpolated
between samples. Results are cached per source-file content hash under <internal>/facecache/, so a
presenter video reused by many jobs is analysed once. Frames without a face get a row of -1.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from daemon.core.config import MediaConfig
from daemon.worker.media import process
from daemon.worker.media.decoder import decode_argv, read_frames
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo

log = logging.getLogger(__name__)

NO_FACE = np.array([-1, -1, -1, -1], np.int32)


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
    s = samples.copy()
    for k in range(len(s)):  # median of 3 neighbours where all are faces: kills single-sample jitter
        window = samples[max(0, k - 1):k + 2]
        if not np.isnan(window).any() and len(window) == 3:
            s[k] = np.median(window, axis=0)
    out = np.full((count, 4), -1.0)
    for i in range(count):
        k0 = min(i // every, len(s) - 1)
        k1 = min(k0 + 1, len(s) - 1)
        t = (i - k0 * every) / every
        a, b = s[k0], s[k1]
        if not np.isnan(a).any() and not np.isnan(b).any():
            out[i] = a + (b - a) * min(t, 1.0)
        elif not np.isnan(a).any() and t < 0.5:
            out[i] = a
        elif not np.isnan(b).any() and t >= 0.5:
            out[i] = b
    return out


class FaceFinder:
    """Face boxes for the source frames a plan uses, cached per content hash."""

    def __init__(self, cfg: MediaConfig, cache_dir: Path) -> None:
        self.cfg = cfg
        self.cache_dir = cache_dir

    def boxes(self, info: MediaInfo, plan: Plan) -> tuple[np.ndarray, bool]:
        """(K, 4) int32 boxes in output pixels for source frames 0..K-1, and whether it was cached."""
        count = min(plan.source_frames, plan.frames)
        every = self.cfg.face_every
        key = (f"{content_hash(info.path)}-{plan.fps_num}_{plan.fps_den}-{plan.width}x{plan.height}"
               f"-e{every}-s{self.cfg.face_max_side}")
        cached = self.cache_dir / f"{key}.npy"
        if cached.exists():
            data = np.load(cached)
            if len(data) >= count:
                return data[:count], True
        started = time.monotonic()
        result = self._analyse(info, plan, count, every)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, result)
        os.replace(tmp, cached)
        log.info("%s: faces in %d frames analysed in %.1f s (%d without a face)", info.path.name, count,
                 time.monotonic() - started, int((result[:, 0] < 0).sum()))
        return result, False

    def _analyse(self, info: MediaInfo, plan: Plan, count: int, every: int) -> np.ndarray:
        scale = min(1.0, self.cfg.face_max_side / max(plan.width, plan.height))
        sw, sh = max(2, int(plan.width * scale) // 2 * 2), max(2, int(plan.height * scale) // 2 * 2)
        small = Plan(**{**plan.to_json(), "width": sw, "height": sh, "deinterlace": False})
        wanted = math.ceil(count / every)
        argv = decode_argv(self.cfg, info, small, 0, plan.source_frames)
        vf = argv.index("-vf") + 1
        argv[vf] = argv[vf].replace("format=yuv420p", f"format=gray,select=not(mod(n\\,{every}))")
        argv[argv.index("-frames:v") + 1] = str(wanted)
        argv[argv.index("-pix_fmt") + 1] = "gray"
        samples = np.full((wanted, 4), np.nan)
        frame = np.empty(sw * sh, np.uint8)
        near = None
        with process.Child(argv, stdout=True, pipe_size=self.cfg.pipe_bytes, name="ffmpeg-faces") as child:
            for k in range(wanted):
                if read_frames(child, frame) < frame.nbytes:
                    break
                found = detect(frame.reshape(sh, sw) / 255.0, near)
                if found is not None:
                    samples[k] = found
                near = found
        boxes = smooth(samples, every, count)
        present = boxes[:, 0] >= 0
        boxes[present] *= np.array([plan.width / sw, plan.height / sh] * 2)
        out = np.where(present[:, None], np.round(boxes), -1).astype(np.int32)
        out[present, 2] = np.minimum(out[present, 2], plan.width)
        out[present, 3] = np.minimum(out[present, 3], plan.height)
        return out

