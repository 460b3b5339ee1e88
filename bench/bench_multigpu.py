"""Throughput of the whole appliance with 1 worker vs N workers (one per GPU) on the same set of jobs.

Runs `python -m daemon up` on a fresh share per configuration, drops identical jobs like a producer
(media first, ticket last), and times from the first drop until every job is in done/. Prints JSON.
Usage: python bench/bench_multigpu.py --jobs 8 --seconds 20 --height 720 --gpus 0 0,1 [--engine warp]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def speechlike(path: Path, seconds: float, rate: int = 16000) -> None:
    """Syllable-rate amplitude-modulated harmonics: gives the engines a speech-like envelope."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.clip(np.sin(2 * math.pi * 3.1 * t), 0, None) ** 2 * (0.6 + 0.4 * np.sin(2 * math.pi * 0.4 * t))
    voice = sum(np.sin(2 * math.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700, 1100), 1))
    pcm = (0.3 * envelope * voice / 2.3 * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def presenter(path: Path, seconds: float, height: int) -> None:
    from skimage import data
    from skimage.io import imsave

    still = path.with_suffix(".png")
    imsave(still, data.astronaut(), check_contrast=False)
    width = (height * 16 // 9) // 2 * 2
    vf = (f"scale={height}:{height},pad={width}:{height}:(ow-iw)/2:0,"
          f"zoompan=z='1.0+0.02*sin(2*PI*on/125)':d=1:s={width}x{height}:fps=25,format=yuv420p")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-loop", "1", "-i", str(still), "-vf", vf,
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", str(path)], check=True)


def run_config(gpus: str, jobs: int, media: Path, engine: str, work: Path) -> dict[str, float]:
    root = work / f"share-{gpus.replace(',', '_')}"
    root.mkdir(parents=True)
    env = dict(os.environ, LIPSYNCD_ROOT=str(root), LIPSYNCD_WORKER_GPUS=gpus, LIPSYNCD_WORKER_ENGINE=engine,
               LIPSYNCD_INTAKE_SETTLE_S="0.5", LIPSYNCD_INTAKE_SCAN_INTERVAL_S="0.2",
               LIPSYNCD_WORKER_POLL_INTERVAL_S="0.2", LIPSYNCD_WATCHDOG_GPU_CHECK="false")
    log = open(work / f"up-{gpus}.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "daemon", "up"], cwd=REPO, env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # wait until every worker reports idle (models loaded), so both runs time only the work
        n_workers = len(gpus.split(","))
        deadline = time.time() + 300
        while time.time() < deadline:
            beats = list((root / ".lipsyncd" / "workers").glob("*.json"))
            if len(beats) >= n_workers and all(json.loads(b.read_text())["phase"] == "idle" for b in beats):
                break
            time.sleep(0.5)
        inbox = root / "inbox"
        started = time.monotonic()
        for i in range(jobs):
            for src, name in ((media / "speech.wav", f"j{i}.wav"), (media / "presenter.mp4", f"j{i}.mp4")):
                shutil.copy(src, inbox / f"{name}.part")
                os.rename(inbox / f"{name}.part", inbox / name)
            (inbox / f"j{i}.toml").write_text(f'audio = "j{i}.wav"\nvideo = "j{i}.mp4"\n')
        while len(list((root / "done").iterdir())) + len(list((root / "failed").iterdir())) < jobs:
            if up.poll() is not None:
                raise RuntimeError(f"up exited: see {log.name}")
            time.sleep(0.2)
        wall = time.monotonic() - started
        failed = len(list((root / "failed").iterdir()))
    finally:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=120)
    return {"workers": n_workers, "jobs": jobs, "failed": failed, "wall_s": round(wall, 2),
            "jobs_per_min": round(60 * jobs / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--engine", default="warp")
    parser.add_argument("--gpus", nargs="+", default=["0", "0,1"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lipsyncd-multigpu-"))
    media = work / "media"
    media.mkdir()
    speechlike(media / "speech.wav", args.seconds)
    presenter(media / "presenter.mp4", min(args.seconds, 8), args.height)
    results = [run_config(g, args.jobs, media, args.engine, work) for g in args.gpus]
    summary = {"engine": args.engine, "height": args.height, "seconds_per_job": args.seconds, "runs": results}
    if len(results) >= 2:
        summary["speedup"] = round(results[0]["wall_s"] / results[-1]["wall_s"], 3)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
