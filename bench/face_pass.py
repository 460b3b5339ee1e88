"""The LBP face pass alone, serial vs parallel segments, on a generated talking-head clip.

One markdown row per thread count: wall seconds (best of --repeat, fresh cache each run) and how far
the boxes are from the first row's (put 1 first for "vs serial"). Usage: python bench/face_pass.py
[--height 1080] [--seconds 60] [--threads 1,2,4,8] [--repeat 3] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import platform
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


def iou_min(a: np.ndarray, b: np.ndarray) -> float:
    both = (a[:, 0] >= 0) & (b[:, 0] >= 0)
    a, b = a[both].astype(float), b[both].astype(float)
    lo, hi = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=1)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return float((inter / (area(a) + area(b) - inter)).min()) if len(a) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", default="1,2,4,8")
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
    print("| threads | segments | face pass s (best) | all runs s | frames with a face | min IoU vs the first row |")
    print("|---|---|---|---|---|---|")
    for threads in (int(t) for t in args.threads.split(",")):
        cfg = replace(base, face_threads=threads)
        times = []
        for _ in range(args.repeat):
            cache = Path(tempfile.mkdtemp(dir=args.dir))
            started = time.monotonic()
            boxes, _ = FaceFinder(cfg, cache).boxes(info, plan)
            times.append(time.monotonic() - started)
            shutil.rmtree(cache)
        serial = boxes if serial is None else serial
        parts = len(segments(-(-min(plan.frames, plan.source_frames) // cfg.face_every), threads))
        print(f"| {threads} | {parts} | {min(times):.2f} | {', '.join(f'{t:.2f}' for t in times)} "
              f"| {int((boxes[:, 0] >= 0).sum())}/{len(boxes)} | {iou_min(serial, boxes):.3f} |")


if __name__ == "__main__":
    main()
