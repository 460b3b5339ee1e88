"""The LBP analyser's look near the last face: CPU per sample and whole-picture searches, per margin.

Samples are decoded the way the face pass does (every 5th frame, grey, 320 px wide) from two generated
720p clips: bench/media.py's presenter and bench_wav2lip_gpu.py's drifting talking head. Usage:
python bench/lbp_look.py [--margins 0.6,0.4] [--seconds 30] [--repeat 3] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_wav2lip_gpu as gpu  # noqa: E402
import media  # noqa: E402

from daemon.worker.faces import lbp  # noqa: E402


def samples(clip: Path) -> np.ndarray:
    graph = "fps=25,select=not(mod(n\\,5)),scale=320:180:flags=bicubic,format=gray"
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(clip), "-vf", graph, "-fps_mode",
                          "passthrough", "-f", "rawvideo", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, 180, 320)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--margins", default="0.6,0.4")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "lipsyncd-bench")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    png = args.dir / "astronaut-head.png"
    gpu.presenter_png(png)
    head = args.dir / f"head-720p-{args.seconds:g}s.mp4"
    if not head.exists():
        gpu.talking_head(head, "ffmpeg", 720, args.seconds, png)
    clips = {"presenter": media.presenter(args.dir / f"presenter-720p-{args.seconds:g}s.mp4", 720, args.seconds),
             "talking head": head}
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    print("| clip | margin | ms per sample (best; all) | whole-picture searches | samples without a face |"
          " face size, px (mean ± sd) |")
    print("|---|---|---|---|---|---|")
    search, searches = lbp._search, [0]

    def counted(gray: np.ndarray) -> np.ndarray | None:
        searches[0] += 1
        return search(gray)

    lbp._search = counted
    for name, clip in clips.items():
        grey = samples(clip)
        for margin in (float(m) for m in args.margins.split(",")):
            lbp.NEAR_MARGIN = margin
            runs = []
            for _ in range(args.repeat):
                searches[0] = 0
                analyse = lbp.analyser()
                started = time.process_time()
                boxes = np.concatenate([analyse(grey[a:a + lbp.LBP_BATCH]) for a in range(0, len(grey), lbp.LBP_BATCH)])
                runs.append(1000 * (time.process_time() - started) / len(grey))
            size = boxes[:, 2] - boxes[:, 0]
            missing = int(np.isnan(boxes[:, 0]).sum())
            print(f"| {name} | {margin} | {min(runs):.1f}; {', '.join(f'{r:.1f}' for r in runs)} | {searches[0]} |"
                  f" {missing} of {len(grey)} | {np.nanmean(size):.1f} ± {np.nanstd(size):.2f} |")


if __name__ == "__main__":
    main()
