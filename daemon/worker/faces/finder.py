"""The face pass's top: which detector analyses a video (LBP, or the engine's RGB detector), at what
sample size, under which cache key, and the analysis started (or its cached result served)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from daemon.core.config import MediaConfig
from daemon.worker.faces.analysis import FacePass
from daemon.worker.faces.cache import Entry, content_hash
from daemon.worker.faces.lbp import LBP_BATCH
from daemon.worker.faces.lbp import VERSION as LBP_VERSION
from daemon.worker.faces.lbp import analyser as lbp_analyser
from daemon.worker.faces.sampling import RGB_BATCH, RgbDetector, Samples, rgb_analyser
from daemon.worker.media.decoder import skips_nonref
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo


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
        how = self._samples(plan)
        entry = Entry(self.cache_dir / f"{self._key(info, plan, how)}.npy")
        return FacePass(self.cfg, info, plan, how, count, entry, self.geometry, cached=entry.load(count))

    def _key(self, info: MediaInfo, plan: Plan, how: Samples) -> str:
        # an LBP key names the sample size and the search's version: boxes found in segments differ from
        # a whole-video pass only in where tracking restarts, so one key serves both; any other detector
        # names itself and its decode height, so no entry serves another detector
        tail = f"s{self.cfg.face_max_side}-v{LBP_VERSION}" if self.detector is None \
            else f"{self.geometry}-h{how.height}"
        crop = "-c" + "_".join(map(str, plan.crop)) if plan.crop else ""  # same size, other region
        size = f"{plan.width}x{plan.height}{crop}"
        nonref = "-nr" if skips_nonref(self.cfg, info) else ""  # samples may show a neighbouring frame
        return f"{content_hash(info.path)}-{plan.fps_num}_{plan.fps_den}-{size}-e{self.cfg.face_every}-{tail}{nonref}"

    def _samples(self, plan: Plan) -> Samples:
        """The detector's samples: grey and at most face_max_side for LBP, RGB at the detector's height."""
        if self.detector is None:
            scale = min(1.0, self.cfg.face_max_side / max(plan.width, plan.height))
            sw, sh = max(2, int(plan.width * scale) // 2 * 2), max(2, int(plan.height * scale) // 2 * 2)
            return Samples(sw, sh, "gray", LBP_BATCH, lbp_analyser)
        sh = max(2, min(plan.height, self.detector.height) // 2 * 2)
        sw = max(2, round(plan.width * sh / plan.height) // 2 * 2)
        lock, detector = threading.Lock(), self.detector
        return Samples(sw, sh, "rgb24", RGB_BATCH, lambda: rgb_analyser(detector, lock))
