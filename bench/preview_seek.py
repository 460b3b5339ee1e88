"""What the done-job preview costs: mouths taken at keyframes against frames spread between them.

    python3 bench/preview_seek.py [--height 720] [--seconds 60] [--repeat 3]

Makes a result-like clip (testsrc2, x264 veryfast CRF 20, a keyframe every 250 frames, as our segments
have them), then times the preview's own ffmpeg command (preview._mouths_argv) for the four frames the
face pass's spread picks and for the keyframes preview._picks now takes, alternating.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from daemon.worker import preview  # noqa: E402
from daemon.worker.media import mp4index, process  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    width = args.height * 16 // 9 // 2 * 2
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "result.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=s={width}x{args.height}:r=25:d={args.seconds}", "-c:v", "libx264", "-preset",
                        "veryfast", "-crf", "20", "-x264-params", "keyint=250:min-keyint=250:scenecut=0",
                        "-pix_fmt", "yuv420p", str(clip)], check=True)
        frames = args.seconds * 25
        box = np.array([width // 3, args.height // 4, 2 * width // 3, 3 * args.height // 4], np.int32)
        boxes = np.tile(box, (frames, 1))
        info = preview.Frames(frames, frames, 25.0, width, args.height)
        keys = mp4index.keyframes(clip)
        ways = {"spread": (preview._picks(boxes, frames), None),
                "keyframes": (preview._picks(boxes, frames, keys), keys)}
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeat):
            for name, (picks, keyed) in ways.items():
                argv = preview._mouths_argv("ffmpeg", clip, info, [(i, boxes[i]) for i in picks], keyed)
                argv = [str(Path(tmp) / "p.jpg") if a == "{out}" else a for a in argv]
                started = time.perf_counter()
                done = process.run(argv, 120)
                times[name].append(time.perf_counter() - started)
                assert done.returncode == 0, done.stderr_tail
        for name, (picks, _) in ways.items():
            print(f"{name:9s} frames {picks}: {', '.join(f'{t:.3f}' for t in times[name])} s "
                  f"(median {statistics.median(times[name]):.3f})")


if __name__ == "__main__":
    main()
