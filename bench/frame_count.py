"""What counting a file's video frames costs: the MP4 index read in-process against an ffprobe child.

Usage: python bench/frame_count.py CLIP.mp4 [--repeat 20]. Prints the median of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.core.config import MediaConfig  # noqa: E402
from daemon.worker.media.encoder import _probe_frames  # noqa: E402
from daemon.worker.media.mp4index import video_samples  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", type=Path)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    cfg = MediaConfig()
    ways = (("mp4 index", lambda: video_samples(args.clip)), ("ffprobe", lambda: _probe_frames(cfg, args.clip)))
    for name, count in ways:
        times, got = [], None
        for _ in range(args.repeat):
            started = time.perf_counter()
            got = count()
            times.append(time.perf_counter() - started)
        print(f"{name}: {got} frames, median {statistics.median(times) * 1000:.2f} ms over {args.repeat}")


if __name__ == "__main__":
    main()
