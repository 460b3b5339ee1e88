"""Memory: peak host RSS of the worker process plus its ffmpeg children, long input vs short input.

Each length renders in a fresh Python process (the "worker") while this process samples the RSS of that
process and all its descendants with psutil every 0.1 s; the sample with the largest sum is kept with
its parts (worker, decode, encode, faces... as bench/appliance.py names them) and when it came. Usage:
  python bench/memory.py --minutes 30 --baseline 1 [--height 720] [--engine warp] [--dir D]
                         [--media encoders=6 encoder_threads=1 ...]   # MediaConfig settings
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import media  # noqa: E402
from appliance import kind  # noqa: E402

WORKER = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from daemon.core.config import Config, MediaConfig
from daemon.worker.engines.registry import load_engine
from daemon.worker.pipeline import ChunkedRenderer
from daemon.worker.render import RenderRequest
audio, video, work, engine_name = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
config = Config(media=MediaConfig(ffmpeg=os.environ.get("FFMPEG", "ffmpeg"),
                                  ffprobe=os.environ.get("FFPROBE", "ffprobe"), **json.loads(sys.argv[6])))
engine = load_engine(engine_name, config)
t = time.monotonic()
stats = ChunkedRenderer(config, work / "internal", engine).render(
    RenderRequest("bench", 1, audio, video, work / "out.mp4", work / "w", engine_name), lambda p: None,
    lambda: False)
print(json.dumps({"wall_s": round(time.monotonic() - t, 1), "frames": stats["frames"],
                  "render_fps": stats["render_fps"], "timings_s": stats["timings_s"],
                  "faces_missing": stats["faces_missing"]}))
"""


def tree_rss(root: psutil.Process) -> tuple[int, int, dict[str, int]]:
    """(worker RSS, worker + descendants RSS, RSS per part) in bytes; processes that vanish mid-sample
    count 0."""
    own = total = 0
    parts: dict[str, int] = {}
    try:
        own = total = root.memory_info().rss
        parts["worker"] = own
        for child in root.children(recursive=True):
            try:
                rss = child.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            part = kind(child) if child.name() != "bwrap" else "bwrap"
            parts[part] = parts.get(part, 0) + rss
    except psutil.Error:
        pass
    return own, total, parts


def measure(minutes: float, args: argparse.Namespace, clip: Path) -> dict:
    d: Path = args.dir
    times = max(1, round(minutes))
    video = media.repeated(clip, times, d / f"presenter{args.height}_{times}min.mp4")
    audio = media.speechlike(d / f"speech_{minutes:g}min.wav", minutes * 60)
    work = d / f"run_{minutes:g}min"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    settings = {k: int(v) if v.isdigit() else v for k, v in (kv.split("=", 1) for kv in args.media)}
    argv = [sys.executable, "-c", WORKER, str(HERE.parent), str(audio), str(video), str(work), args.engine,
            json.dumps(settings)]
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    peak_own = peak_total = 0
    peak_parts: dict[str, int] = {}
    peak_at = 0.0
    samples = 0
    while proc.poll() is None:
        own, total, parts = tree_rss(root)
        peak_own = max(peak_own, own)
        if total > peak_total:
            peak_total, peak_parts, peak_at = total, parts, time.monotonic() - started
        samples += 1
        time.sleep(0.1)
    wall = time.monotonic() - started
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"worker failed for {minutes} min (exit {proc.returncode})")
    stats = json.loads(out.strip().splitlines()[-1])
    return {"minutes": minutes, "peak_worker_mb": round(peak_own / 2**20, 1),
            "peak_total_mb": round(peak_total / 2**20, 1), "samples": samples,
            "peak_parts_mb": {k: round(v / 2**20, 1) for k, v in sorted(peak_parts.items())},
            "peak_at_fraction": round(peak_at / wall, 3), **stats}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--baseline", type=float, default=1.0)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--engine", default="warp")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/lipsyncd-bench"))
    ap.add_argument("--media", nargs="*", default=[], help="KEY=VALUE MediaConfig settings for the worker")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    clip = media.presenter(args.dir / f"presenter{args.height}_1min.mp4", args.height, 60.0)
    short = measure(args.baseline, args, clip)
    long = measure(args.minutes, args, clip)
    growth = (long["peak_total_mb"] - short["peak_total_mb"]) / short["peak_total_mb"] * 100
    print(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} cpu", "height": args.height,
                      "short": short, "long": long, "growth_percent": round(growth, 2)}, indent=1))
    print(f"| {args.height}p | {args.baseline:g} min: {short['peak_total_mb']} MB "
          f"(worker {short['peak_worker_mb']}) | {args.minutes:g} min: {long['peak_total_mb']} MB "
          f"(worker {long['peak_worker_mb']}) | {growth:+.2f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
