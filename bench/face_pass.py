"""The LBP face pass alone, serial vs parallel segments, on a generated talking-head clip.

One markdown row per thread count and media.face_skip_nonref setting: wall seconds (best of --repeat,
fresh cache each run), the CPU seconds of the worker's threads and of the face-pass decoders (the run
with the best wall), and how far the boxes are from the first row's (put 1 first for "vs serial").
Usage: python bench/face_pass.py [--height 1080] [--seconds 60] [--threads 1,2,4,8] [--nonref on,off]
[--repeat 3] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import media  # noqa: E402

from daemon.core.config import MediaConfig  # noqa: E402
from daemon.worker.faces import FaceFinder  # noqa: E402
from daemon.worker.faces.segments import segments  # noqa: E402
from daemon.worker.media.plan import make_plan  # noqa: E402
from daemon.worker.media.probe import probe  # noqa: E402


def iou_min(a: np.ndarray, b: np.ndarray, q: float = 0.0) -> float:
    both = (a[:, 0] >= 0) & (b[:, 0] >= 0)
    a, b = a[both].astype(float), b[both].astype(float)
    lo, hi = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=1)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return float(np.quantile(inter / (area(a) + area(b) - inter), q)) if len(a) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--nonref", default="on", help="media.face_skip_nonref values to try, e.g. on,off")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "lipsyncd-bench")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    video = media.presenter(args.dir / f"presenter-{args.height}p-{args.seconds:g}s.mp4", args.height,
                            args.seconds)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    base = MediaConfig()
    info = probe(video, base)
    plan = make_plan(info, args.seconds, base, None, {})
    serial: np.ndarray | None = None
    print("| threads | skip non-reference frames | segments | face pass s (best) | all runs s | worker CPU s "
          "| decoders CPU s | frames with a face | IoU vs the first row: min, median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads in (int(t) for t in args.threads.split(",")):
        for nonref in args.nonref.split(","):
            cfg = replace(base, face_threads=threads, face_skip_nonref=nonref == "on")
            runs = []
            for _ in range(args.repeat):
                cache = Path(tempfile.mkdtemp(dir=args.dir))
                before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.monotonic()
                boxes, _ = FaceFinder(cfg, cache).boxes(info, plan)
                wall = time.monotonic() - started
                after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = [a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before, strict=True)]
                runs.append((wall, *cpu))
                shutil.rmtree(cache)
            serial = boxes if serial is None else serial
            parts = len(segments(-(-min(plan.frames, plan.source_frames) // cfg.face_every), threads))
            best = min(runs)
            print(f"| {threads} | {nonref} | {parts} | {best[0]:.2f} | {', '.join(f'{r[0]:.2f}' for r in runs)} "
                  f"| {best[1]:.2f} | {best[2]:.2f} | {int((boxes[:, 0] >= 0).sum())}/{len(boxes)} "
                  f"| {iou_min(serial, boxes):.3f}, {iou_min(serial, boxes, 0.5):.3f} |")


if __name__ == "__main__":
    main()
