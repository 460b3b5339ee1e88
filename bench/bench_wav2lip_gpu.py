"""End-to-end Wav2Lip through the real chunked pipeline vs a plain ffmpeg transcode of the same clip.

    python3 bench/bench_wav2lip_gpu.py --out pipeline.json [--heights 1080 720] [--seconds 60]

Per height: a generated talking-head clip (the astronaut still, moving), speech-like audio, random
weights in a checkpoint file. Measures end-to-end frames/s, the share of decode / detect / crop /
model / composite / encode, peak VRAM and host RSS, and in the same run `ffmpeg -i clip -i speech
-c:v libx264 -c:a aac` with the pipeline's own encoder settings. Then the warm-worker check: a second
job on the same resident engine (new audio, same presenter), timed from the claim to its first chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.core.config import Config, load_config  # noqa: E402
from daemon.worker.engines.wav2lip import Wav2LipEngine, generator  # noqa: E402

# ------------------------------------------------------------------------------------------------
# THE PIPELINE CALL. Everything the benchmark needs from the media pipeline (merged by the lead) is
# in these two functions; adjust them, and nothing else, if the pipeline's interface changes.
# ------------------------------------------------------------------------------------------------


def make_renderer(config: Config, engine: Wav2LipEngine, internal: Path) -> Any:
    """The worker's resident renderer around the resident engine (one per worker process)."""
    from daemon.worker.pipeline import ChunkedRenderer

    return ChunkedRenderer(config, internal, engine)


def run_job(renderer: Any, job_id: str, audio: Path, video: Path, job_dir: Path,
            on_progress: Any) -> dict[str, Any]:
    """One job, as the worker loop runs it after a claim; returns the renderer's stats."""
    from daemon.worker.render import RenderRequest

    request = RenderRequest(job_id=job_id, attempt=1, audio=audio, video=video,
                            output=job_dir / "result.tmp.mp4", workdir=job_dir / "work", engine="wav2lip")
    return renderer.render(request, on_progress, lambda: False)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------


def sh(argv: list[str]) -> float:
    """Run a command to completion (bench-side setup only); seconds taken."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - start


def speech_wav(path: Path, seconds: float, seed: int) -> None:
    """Voiced harmonics with syllable-rate envelope and pauses, 16 kHz mono int16 (espeak-free)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 115 + 25 * np.sin(2 * np.pi * 0.6 * t) + 10 * rng.standard_normal() * np.sin(2 * np.pi * 0.13 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) * np.exp(-k / 6) for k in range(1, 20))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 0.7
    pauses = (np.sin(2 * np.pi * 0.21 * t + seed) > -0.7).astype(float)
    signal = 0.25 * voiced * syllables * pauses + 0.01 * rng.standard_normal(t.size)
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm.tobytes())


def talking_head(path: Path, ffmpeg: str, height: int, seconds: float, png: Path) -> float:
    """The astronaut's head and shoulders on a plain background, drifting and bobbing, H.264 25 fps."""
    width = height * 16 // 9
    size = int(height * 0.95)
    graph = (f"[1:v]scale={size}:{size}[p];[0:v][p]overlay=x='(W-w)/2+W*0.03*sin(2*PI*t/5)':"
             f"y='(H-h)/2+H*0.015*sin(2*PI*t/3)':shortest=1,format=yuv420p")
    return sh([ffmpeg, "-y", "-v", "error", "-f", "lavfi", "-i",
               f"color=c=0x3a4350:s={width}x{height}:r=25:d={seconds}", "-loop", "1", "-framerate", "25",
               "-i", str(png), "-filter_complex", graph, "-t", str(seconds), "-c:v", "libx264",
               "-preset", "veryfast", "-crf", "18", "-g", "50", "-an", str(path)])


def presenter_png(path: Path) -> None:
    from skimage import data, io

    io.imsave(str(path), data.astronaut()[:330, 90:420], check_contrast=False)  # head and shoulders


class Peaks:
    """Samples host RSS (worker + its ffmpeg children) and GPU memory every 0.1 s while running."""

    def __init__(self) -> None:
        self.rss = self.rss_children = self.nvml = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
        except Exception:  # noqa: BLE001 - NVML is optional for the numbers that come from torch
            self._handle = None

    def __enter__(self) -> Peaks:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.1):
            kids = sum(_rss(c) for c in me.children(recursive=True))
            self.rss = max(self.rss, me.memory_info().rss)
            self.rss_children = max(self.rss_children, kids)
            if self._handle is not None:
                used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
                self.nvml = max(self.nvml, used)

    def report(self) -> dict[str, Any]:
        gb = 1e9
        out = {"host_rss_worker_gb": round(self.rss / gb, 3),
               "host_rss_ffmpeg_children_gb": round(self.rss_children / gb, 3)}
        if torch.cuda.is_available():
            out["vram_allocated_peak_gb"] = round(torch.cuda.max_memory_allocated() / gb, 3)
            out["vram_reserved_peak_gb"] = round(torch.cuda.max_memory_reserved() / gb, 3)
        if self._handle is not None:
            out["vram_device_used_peak_gb"] = round(self.nvml / gb, 3)
        return out


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


def plain_transcode(config: Config, clip: Path, audio: Path, out: Path) -> float:
    m = config.media
    return sh([m.ffmpeg, "-y", "-v", "error", "-i", str(clip), "-i", str(audio), "-map", "0:v:0", "-map",
               "1:a:0", "-c:v", "libx264", "-preset", m.x264_preset, "-crf", str(m.crf), "-pix_fmt",
               "yuv420p", "-c:a", "aac", "-b:a", f"{m.audio_bitrate_k}k", "-shortest", str(out)])


def instrument(engine: Wav2LipEngine, marks: dict[str, float]) -> None:
    """Record when the engine first receives frames (the first chunk has started)."""
    original = engine.render

    def render(chunk: Any, features: Any) -> torch.Tensor:
        marks.setdefault("first_engine_call", time.perf_counter())
        return original(chunk, features)

    engine.render = render  # type: ignore[method-assign]


def one_height(config: Config, engine: Wav2LipEngine, renderer: Any, root: Path, height: int,
               seconds: float, png: Path, warm_check: bool, untimed: bool = False) -> dict[str, Any]:
    clip, speech = root / f"clip{height}.mp4", root / f"speech{height}.wav"
    made = 0.0
    if not clip.exists():  # same clip for every batch size and run
        made = talking_head(clip, config.media.ffmpeg, height, seconds, png)
        speech_wav(speech, seconds, seed=height)
    plain_s = plain_transcode(config, clip, speech, root / f"plain{height}.mp4")
    engine.timings = None if untimed else {}
    marks: dict[str, float] = {}
    job_dir = Path(tempfile.mkdtemp(prefix=f"job{height}-", dir=root))  # never resume an earlier run
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    with Peaks() as peaks:
        stats = run_job(renderer, f"bench{height}", speech, clip, job_dir,
                        lambda p: marks.setdefault("first_chunk_done", time.perf_counter())
                        if p.phase == "render" else None)
    e2e = time.perf_counter() - started
    cpu = {k: round(v - cpu_before[k], 2) for k, v in cpu_seconds().items()}
    row = {"height": height, "seconds": seconds, "clip_generation_s": round(made, 1),
           "frames": stats["frames"], "e2e_s": round(e2e, 2), "e2e_fps": round(stats["frames"] / e2e, 1),
           "plain_transcode_s": round(plain_s, 2), "plain_transcode_fps": round(stats["frames"] / plain_s, 1),
           "e2e_over_plain": round(e2e / plain_s, 3), "faces_missing": stats.get("faces_missing"),
           "stage_timings": not untimed, "cpu_s": cpu,
           "shares": shares(stats.get("timings_s", {}), engine.timings or {}, e2e), "memory": peaks.report(),
           "pipeline_stats": stats}
    if warm_check:
        row["warm_second_job"] = second_job(engine, renderer, root, clip, height)
    return row


def cpu_seconds() -> dict[str, float]:
    """User + system CPU seconds of this process and of its finished children (the ffmpeg processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"worker": own.ru_utime + own.ru_stime, "ffmpeg_children": kids.ru_utime + kids.ru_stime}


def shares(pipeline: dict[str, float], engine: dict[str, float], total: float) -> dict[str, float]:
    """Fractions of the end-to-end time; `yuv_rgb` = the pipeline's engine stage minus the engine's parts."""
    parts = {"decode": pipeline.get("decode", 0.0), "detect": pipeline.get("faces", 0.0),
             "crop": engine.get("crop", 0.0), "model": engine.get("model", 0.0),
             "composite": engine.get("composite", 0.0), "encode": pipeline.get("encode", 0.0),
             "mux": pipeline.get("mux", 0.0), "audio+probe+prepare": sum(pipeline.get(k, 0.0) for k in
                                                                        ("audio", "probe", "prepare"))}
    inside = parts["crop"] + parts["model"] + parts["composite"]
    parts["yuv_rgb"] = max(0.0, pipeline.get("engine", 0.0) - inside)
    parts["other"] = max(0.0, total - sum(parts.values()))
    return {k: round(v / total, 3) for k, v in parts.items()}


def second_job(engine: Wav2LipEngine, renderer: Any, root: Path, clip: Path, height: int) -> dict[str, Any]:
    """A new script for the same presenter on the warm worker: claim → first chunk, no model reload."""
    speech = root / "speech_second.wav"
    speech_wav(speech, 10.0, seed=99)
    marks: dict[str, float] = {}
    instrument(engine, marks)
    model_before = id(engine.model)
    claimed = time.perf_counter()
    stats = run_job(renderer, f"warm{height}", speech, clip, Path(tempfile.mkdtemp(prefix="warm", dir=root)),
                    lambda p: marks.setdefault("first_chunk_done", time.perf_counter())
                    if p.phase == "render" else None)
    del engine.render  # back to the class method
    return {"claim_to_first_chunk_start_s": round(marks["first_engine_call"] - claimed, 3),
            "claim_to_first_chunk_done_s": round(marks["first_chunk_done"] - claimed, 3),
            "model_reloaded": id(engine.model) != model_before, "face_cache_hit": stats.get("face_cache_hit"),
            "target_s": 1.0, "timings_s": stats.get("timings_s")}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--heights", type=int, nargs="+", default=[1080, 720])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch-frames", type=int, nargs="+", default=[16],
                        help="media.batch_frames values to run (16 = the shipped default)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every setting, interleaved")
    parser.add_argument("--untimed", action="store_true",
                        help="no per-stage GPU synchronisation in the engine: production timing, fewer shares")
    parser.add_argument("--precision", default="fp16", choices=("fp16", "bf16", "fp32"))
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="w2lbench"))
    root.mkdir(parents=True, exist_ok=True)
    ckpt = root / "wav2lip.pth"
    torch.save({"state_dict": generator.Wav2Lip().state_dict(), "global_step": 0}, ckpt)
    started = time.perf_counter()
    engine = Wav2LipEngine(bench_config(ckpt, args.precision, 128).engines.wav2lip, device)
    load_s = time.perf_counter() - started
    png = root / "presenter.png"
    presenter_png(png)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(device),
                              "model_load_s": round(load_s, 2), "precision": engine.precision, "rows": []}
    first = True
    for run in range(args.repeat):  # interleaved repeats: a slow spell of the box hits every setting
        for batch in args.batch_frames:
            config = bench_config(ckpt, args.precision, batch)
            for height in args.heights:
                renderer = make_renderer(config, engine, Path(tempfile.mkdtemp(prefix="internal", dir=root)))
                row = one_height(config, engine, renderer, root, height, args.seconds, png, warm_check=first,
                                 untimed=args.untimed)
                row.update(batch_frames=batch, run=run)
                first = False
                result["rows"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "pipeline_stats"}), flush=True)
                result["summary"] = summary(result["rows"])
                args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=1))
    return 0


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (batch_frames, height): the median of the runs' e2e / plain ratios, and every ratio."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["batch_frames"], row["height"]), []).append(row)
    out = []
    for (batch, height), group in groups.items():
        ratios = sorted(r["e2e_over_plain"] for r in group)
        e2e = sorted(r["e2e_s"] for r in group)
        plain = sorted(r["plain_transcode_s"] for r in group)
        out.append({"batch_frames": batch, "height": height, "runs": len(group),
                    "median_e2e_over_plain": ratios[len(ratios) // 2], "ratios": ratios,
                    "median_e2e_s": e2e[len(e2e) // 2], "median_plain_s": plain[len(plain) // 2],
                    "median_e2e_fps": round(group[0]["frames"] / e2e[len(e2e) // 2], 1)})
    return out


def bench_config(ckpt: Path, precision: str, batch_frames: int) -> Config:
    base = load_config(env={k: v for k, v in os.environ.items() if not k.startswith("LIPSYNCD_")})
    # frames per pipeline batch; the generator gets min(this, engines.wav2lip.batch_size = 128) faces a call
    media = dataclasses.replace(base.media, batch_frames=batch_frames)  # type: ignore[call-arg]
    wav2lip = dataclasses.replace(base.engines.wav2lip, checkpoint=str(ckpt), precision=precision)
    return dataclasses.replace(base, media=media, engines=dataclasses.replace(base.engines, wav2lip=wav2lip))


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpu_count": os.cpu_count(), "ffmpeg": ffmpeg_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def ffmpeg_version() -> str:
    try:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    except OSError:
        return "missing"
    return out.splitlines()[0] if out else "unknown"


if __name__ == "__main__":
    sys.exit(main())
