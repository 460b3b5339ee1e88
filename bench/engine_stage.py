"""The render loop's engine stage alone, on decoded frames in RAM: old vs new host/device code, batch sizes.

    python3 bench/engine_stage.py --clip face720.mp4 [--old DIR] [--frames 512] [--batches 16 32 64]

Per batch: face_region → to_rgb → wav2lip render (crops, model, composite) → write_back, exactly as
`ChunkedRenderer._batch` calls them, on the first `--frames` frames of the clip (yuv420p from ffmpeg),
with a face box that drifts a few pixels per frame (the smoothed boxes of a talking head). `--old DIR`
holds frames.py and composite.py of an earlier commit to time side by side. Also the generator alone,
eager vs one CUDA graph per batch size. Seconds per 1500 frames, best of `--repeat`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.core.config import Wav2LipEngineConfig  # noqa: E402
from daemon.worker.engines import frames as new_frames  # noqa: E402
from daemon.worker.engines.base import Chunk  # noqa: E402
from daemon.worker.engines.wav2lip import Wav2LipEngine, generator  # noqa: E402
from daemon.worker.engines.wav2lip import composite as new_composite  # noqa: E402
from daemon.worker.engines.wav2lip import engine as engine_module


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def decode(clip: Path, frames: int) -> tuple[np.ndarray, int, int]:
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(clip)], capture_output=True, text=True)
    w, h = (int(x) for x in probe.stdout.strip().split(",")[:2])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-frames:v", str(frames), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(frames, -1).copy(), w, h


def boxes_for(n: int, w: int, h: int) -> np.ndarray:
    """The astronaut's face in bench/appliance.py's clips: ~0.32 H wide, 0.37 H tall, drifting."""
    t = np.arange(n) / 25.0
    cx = w / 2 + 0.09 * h + w * 0.03 * np.sin(2 * np.pi * t / 5)
    cy = 0.33 * h + h * 0.015 * np.sin(2 * np.pi * t / 3)
    bw, bh = 0.32 * h, 0.40 * h
    return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.int32)


def stage(engine: Wav2LipEngine, yuv: ModuleType, buf: np.ndarray, w: int, h: int, boxes: np.ndarray,
          start: int, features: Any, parts: dict[str, float] | None) -> None:
    """One batch as the pipeline runs it; with `parts`, synchronised seconds per step."""
    def tick(name: str, since: float) -> float:
        if parts is None:
            return since
        sync()
        now = time.perf_counter()
        parts[name] = parts.get(name, 0.0) + now - since
        return now

    t = time.perf_counter()
    region = yuv.face_region(boxes, w, h)
    shift = np.array(region[:2] * 2, np.int32)
    local = np.where(boxes[:, :1] >= 0, boxes - shift, -1).astype(np.int32)
    rgb = yuv.to_rgb(buf, w, h, engine.device, region)
    t = tick("to_rgb", t)
    out = engine.render(Chunk(start=start, frames=rgb, boxes=local), features)
    t = tick("engine.render", t)
    yuv.write_back(buf, w, h, rgb, out, region)
    tick("write_back", t)


def run(engine: Wav2LipEngine, yuv: ModuleType, comp: ModuleType, frames: np.ndarray, w: int, h: int,
        boxes: np.ndarray, batch: int, repeat: int, features: Any) -> dict[str, Any]:
    engine_module.composite = comp  # type: ignore[attr-defined]
    n = len(frames)
    scale = 1500 / n
    best = float("inf")
    for _ in range(repeat):
        work = frames.copy()
        sync()
        t = time.perf_counter()
        for a in range(0, n, batch):
            stage(engine, yuv, work[a:a + batch], w, h, boxes[a:a + batch], a, features, None)
        sync()
        best = min(best, time.perf_counter() - t)
    parts: dict[str, float] = {}
    engine.timings = {}
    work = frames.copy()
    for a in range(0, n, batch):
        stage(engine, yuv, work[a:a + batch], w, h, boxes[a:a + batch], a, features, parts)
    parts.update({f"  {k}": v for k, v in engine.timings.items()})
    engine.timings = None
    return {"s_per_1500": round(best * scale, 3),
            "synced_parts_s_per_1500": {k: round(v * scale, 3) for k, v in parts.items()}, "result": work}


def model_alone(engine: Wav2LipEngine, batch: int, repeat: int = 20) -> dict[str, float]:
    """The generator at `batch`: eager vs replaying one captured CUDA graph (ms per call)."""
    audio = torch.randn(batch, 1, 80, 16, device="cuda")
    faces = torch.rand(batch, 6, 96, 96, device="cuda")

    def eager() -> torch.Tensor:
        return engine_module.generate(engine.model, audio, faces, engine.precision, True)

    for _ in range(3):
        eager()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        eager()
    torch.cuda.synchronize()
    eager_ms = (time.perf_counter() - t) / repeat * 1e3
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            eager()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.autocast("cuda", torch.float16, cache_enabled=False), \
            torch.inference_mode():
        engine.model(audio.contiguous(memory_format=torch.channels_last),
                     faces.contiguous(memory_format=torch.channels_last))
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        graph.replay()
    torch.cuda.synchronize()
    return {"eager_ms": round(eager_ms, 3), "graph_ms": round((time.perf_counter() - t) / repeat * 1e3, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", type=Path, required=True)
    ap.add_argument("--old", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=512)
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    ckpt = Path("/tmp/engine_stage_w2l.pth")
    torch.save({"state_dict": generator.Wav2Lip().state_dict()}, ckpt)
    engine = Wav2LipEngine(Wav2LipEngineConfig(checkpoint=str(ckpt)), "cuda" if torch.cuda.is_available() else "cpu")
    frames, w, h = decode(args.clip, args.frames)
    boxes = boxes_for(len(frames), w, h)
    rng = np.random.default_rng(0)
    features = engine.prepare(rng.standard_normal(16000 * 30).astype(np.float32) * 0.1, 25.0, len(frames))
    impls = {"new": (new_frames, new_composite)}
    if args.old:
        impls = {"old": (load(args.old / "frames.py", "old_frames"), load(args.old / "composite.py", "old_comp")),
                 **impls}
    out: dict[str, Any] = {"clip": str(args.clip), "size": [w, h], "frames": len(frames), "rows": []}
    results: dict[tuple[str, int], np.ndarray] = {}
    for batch in args.batches:
        for name, (yuv, comp) in impls.items():
            row = run(engine, yuv, comp, frames, w, h, boxes, batch, args.repeat, features)
            results[(name, batch)] = row.pop("result")
            row.update(impl=name, batch=batch)
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
        if "old" in impls:
            diff = np.abs(results[("old", batch)].astype(int) - results[("new", batch)].astype(int))
            out.setdefault("old_vs_new_bytes", {})[batch] = {"max": int(diff.max()), "mean": float(diff.mean())}
            print("old vs new output bytes", batch, out["old_vs_new_bytes"][batch], flush=True)
    try:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device: the generator alone is not timed")
        out["model_alone"] = {b: model_alone(engine, b) for b in args.batches}
    except RuntimeError as exc:  # a graph capture this torch refuses: say so, keep the rest
        out["model_alone"] = {"error": str(exc)[:500]}
    print(json.dumps(out["model_alone"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
