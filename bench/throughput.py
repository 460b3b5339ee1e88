"""Throughput: our chunked pipeline with `warp` vs a plain ffmpeg decode + encode of the same clip.

Both sides in one run, on the same machine, same x264 preset/crf and AAC settings. Prints a markdown
row for bench/RESULTS.md. Usage: python bench/throughput.py [--height 1080] [--seconds 20] [--dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import media  # noqa: E402

from daemon.core.config import Config, MediaConfig  # noqa: E402
from daemon.worker.engines.registry import load_engine  # noqa: E402
from daemon.worker.pipeline import ChunkedRenderer  # noqa: E402
from daemon.worker.render import RenderRequest  # noqa: E402


def plain(cfg: MediaConfig, video: Path, audio: Path, seconds: float, out: Path) -> float:
    started = time.monotonic()
    media.ff("-i", video, "-i", audio, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "libx264",
             "-preset", cfg.x264_preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p", "-c:a", "aac",
             "-b:a", f"{cfg.audio_bitrate_k}k", "-ar", "48000", "-t", str(seconds), "-movflags", "+faststart",
             out)
    return time.monotonic() - started


def ours(config: Config, engine_name: str, video: Path, audio: Path, work: Path,
         internal: Path) -> tuple[float, dict]:
    shutil.rmtree(work, ignore_errors=True)
    engine = load_engine(engine_name, config)
    renderer = ChunkedRenderer(config, internal, engine)
    request = RenderRequest("bench", 1, audio, video, work / "out.mp4", work / "w", engine_name)
    started = time.monotonic()
    stats = renderer.render(request, lambda p: None, lambda: False)
    return time.monotonic() - started, stats


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--engine", default="warp")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/lipsyncd-bench"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    video = media.presenter(args.dir / f"presenter{args.height}_{args.seconds:g}s.mp4", args.height,
                            args.seconds)
    audio = media.speechlike(args.dir / f"speech_{args.seconds:g}s.wav", args.seconds)
    config = Config(media=MediaConfig(ffmpeg=os.environ.get("FFMPEG", "ffmpeg"),
                                      ffprobe=os.environ.get("FFPROBE", "ffprobe")))
    internal = args.dir / "internal"
    shutil.rmtree(internal / "facecache", ignore_errors=True)
    p1 = plain(config.media, video, audio, args.seconds, args.dir / "plain.mp4")
    cold, stats = ours(config, args.engine, video, audio, args.dir / "ours", internal)
    warm, stats_warm = ours(config, args.engine, video, audio, args.dir / "ours", internal)
    p2 = plain(config.media, video, audio, args.seconds, args.dir / "plain.mp4")
    base = (p1 + p2) / 2
    result = {"machine": f"{platform.node()} {os.cpu_count()} cpu",
              "clip": f"{args.height}p {args.seconds:g}s",
              "frames": stats["frames"], "plain_s": [round(p1, 2), round(p2, 2)],
              "ours_cold_s": round(cold, 2), "ours_warm_s": round(warm, 2),
              "ratio_cold": round(cold / base, 2), "ratio_warm": round(warm / base, 2),
              "device": str(load_engine(args.engine, config).device),
              "stages_cold": stats["timings_s"], "stages_warm": stats_warm["timings_s"]}
    print(json.dumps(result, indent=1))
    print(f"| {result['clip']} | {args.engine} on {result['device']} | plain {p1:.2f} / {p2:.2f} s | "
          f"ours {cold:.2f} s cold, {warm:.2f} s warm face cache | ratio {result['ratio_cold']} / "
          f"{result['ratio_warm']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
