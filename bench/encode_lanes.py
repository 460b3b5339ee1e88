"""x264 alone: one child with all cores vs K children with T threads each on consecutive 250-frame chunks.

    python3 bench/encode_lanes.py CLIP [--configs 1x0 2x8 3x5 4x4 6x3 8x2] [--repeat 2]

The clip is decoded to raw yuv420p in RAM once; each configuration feeds the same frames from RAM to
x264 children (the pipeline's encoder command: veryfast, crf 20, fixed GOP = chunk) through pipes, K at
a time, one chunk each, and reports wall seconds and frames/s (best of --repeat). "1x0" = one child,
x264's own thread count, the way the pipeline encoded before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHUNK = 250


def probe(clip: Path) -> tuple[int, int]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height", "-of", "csv=p=0", str(clip)], capture_output=True, text=True,
                         check=True).stdout.strip().split(",")
    return int(out[0]), int(out[1])


def encode(frames: bytes, size: tuple[int, int], lanes: int, threads: int, out: Path) -> float:
    w, h = size
    frame = w * h * 3 // 2
    count = len(frames) // frame
    chunks = [(a, min(count, a + CHUNK)) for a in range(0, count, CHUNK)]
    slots = threading.Semaphore(lanes)
    view = memoryview(frames)

    def one(i: int, a: int, b: int) -> None:
        argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s",
                f"{w}x{h}", "-framerate", "25", "-i", "pipe:0", "-c:v", "libx264", "-preset", "veryfast",
                "-crf", "20", "-x264-params", f"keyint={CHUNK}:min-keyint={CHUNK}:scenecut=0"]
        if threads:
            argv += ["-threads", str(threads)]
        proc = subprocess.Popen([*argv, "-f", "mp4", str(out / f"seg{i}.mp4")], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(view[a * frame:b * frame])
        proc.stdin.close()
        proc.wait()
        slots.release()

    started = time.perf_counter()
    workers = []
    for i, (a, b) in enumerate(chunks):
        slots.acquire()  # chunks start in order, at most `lanes` at once (as the pipeline's lanes)
        t = threading.Thread(target=one, args=(i, a, b))
        t.start()
        workers.append(t)
    for t in workers:
        t.join()
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", type=Path)
    ap.add_argument("--configs", nargs="+", default=["1x0", "2x8", "3x5", "4x4", "6x3", "8x2"])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    size = probe(args.clip)
    frames = subprocess.run(["ffmpeg", "-v", "error", "-i", str(args.clip), "-f", "rawvideo", "-pix_fmt",
                             "yuv420p", "pipe:1"], capture_output=True, check=True).stdout
    count = len(frames) // (size[0] * size[1] * 3 // 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):  # interleaved
            for config in args.configs:
                lanes, threads = map(int, config.split("x"))
                rows.append({"config": config, "s": round(encode(frames, size, lanes, threads, Path(tmp)), 3)})
    best = {c: min(r["s"] for r in rows if r["config"] == c) for c in args.configs}
    result = {"clip": str(args.clip), "size": size, "frames": count, "cpus": os.cpu_count(), "runs": rows,
              "best": {c: {"s": s, "fps": round(count / s, 1)} for c, s in best.items()}}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
