"""Model-only Wav2Lip numbers, no ffmpeg: generator frames/s per precision, S3FD detection, engine.render.

    python3 bench/bench_wav2lip_model.py --out result.json [--device cuda] [--batch 128] [--repeat 20]

Random weights (loaded through a checkpoint file, as the worker does). Each figure is the mean of
`--repeat` timed runs after 3 warm-ups, with the device synchronised around the timed region.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.core.config import Wav2LipEngineConfig  # noqa: E402
from daemon.worker.engines.base import Chunk  # noqa: E402
from daemon.worker.engines.wav2lip import Wav2LipEngine, detection, generator, s3fd  # noqa: E402
from daemon.worker.engines.wav2lip.engine import generate  # noqa: E402


def timed(fn: Any, device: torch.device, repeat: int, warmup: int = 3) -> float:
    """Mean seconds per call of fn()."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeat


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3) if device.type == "cuda" else None


def generator_rows(model: generator.Wav2Lip, device: torch.device, batch: int, repeat: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    audio = (torch.rand(batch, 1, 80, 16, generator=g) * 8 - 4).to(device)
    faces = torch.rand(batch, 6, 96, 96, generator=g).to(device)
    rows = []
    modes = [("fp32", False), ("fp16", False), ("fp16", True), ("bf16", True)]
    reference = generate(model, audio, faces, "fp32")
    for precision, channels_last in modes:
        if device.type == "cpu" and precision != "fp32" and batch > 8:
            continue  # emulated half precision on a CPU takes minutes and says nothing about the GPU
        layout = torch.channels_last if channels_last else torch.contiguous_format
        m = model.to(memory_format=layout)  # type: ignore[call-overload]
        peak_reset(device)
        seconds = timed(lambda m=m, p=precision, c=channels_last: generate(m, audio, faces, p, c),
                        device, repeat)
        diff = float((generate(m, audio, faces, precision, channels_last) - reference).abs().max())
        rows.append({"what": "generator", "precision": precision, "channels_last": channels_last,
                     "batch": batch, "ms_per_batch": round(seconds * 1e3, 3),
                     "frames_per_s": round(batch / seconds, 1), "peak_gb": peak_gb(device),
                     "max_abs_diff_vs_fp32": diff})
        print(json.dumps(rows[-1]), flush=True)
    model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    return rows


def detector_rows(device: torch.device, repeat: int) -> list[dict]:
    net = s3fd.S3FD().eval()
    rows = []
    sizes = [(480, 854, 16), (720, 1280, 16)] if device.type == "cuda" else [(240, 320, 2)]
    for h, w, batch in sizes:
        det = detection.S3FDDetector(net, device)
        frames = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8, device=device)
        peak_reset(device)
        seconds = timed(lambda d=det, f=frames: d.detect(f), device, max(2, repeat // 4))
        rows.append({"what": "s3fd detect (network + device decode)", "input": f"{w}x{h}", "batch": batch,
                     "fp16": det.half, "ms_per_batch": round(seconds * 1e3, 2),
                     "frames_per_s": round(batch / seconds, 1), "peak_gb": peak_gb(device)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def engine_rows(ckpt: Path, device: torch.device, batch: int, repeat: int) -> list[dict]:
    """engine.render on frames already on the device: crop + model + composite, per composite mode."""
    rows = []
    sizes = [(1080, 1920), (720, 1280)] if device.type == "cuda" else [(240, 320)]
    for composite_mode in ("feather", "paste"):
        for h, w in sizes:
            cfg = Wav2LipEngineConfig(checkpoint=str(ckpt), batch_size=batch, composite=composite_mode)
            engine = Wav2LipEngine(cfg, device)
            n = batch if device.type == "cuda" else 4
            features = engine.prepare(np.random.default_rng(0).normal(0, 0.1, 16000 * 10), 25.0, 250)
            frames = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, device=device)
            side = h // 3
            boxes = np.tile(np.array([[w // 2 - side // 2, h // 4, w // 2 + side // 2, h // 4 + side]],
                                     np.int32), (n, 1))
            engine.timings = {}
            peak_reset(device)
            seconds = timed(lambda e=engine, f=frames, b=boxes, ft=features: e.render(Chunk(0, f, b), ft),
                            device, max(2, repeat // 2))
            split = {k: round(v / sum(engine.timings.values()), 3) for k, v in engine.timings.items()}
            rows.append({"what": "engine.render", "composite": composite_mode, "frame": f"{w}x{h}",
                         "face_px": side, "batch": n, "precision": engine.precision,
                         "frames_per_s": round(n / seconds, 1), "share": split, "peak_gb": peak_gb(device)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def machine(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
            "cpu_count": __import__("os").cpu_count()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(device), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "wav2lip.pth"
        torch.save({"state_dict": generator.Wav2Lip().state_dict()}, ckpt)
        engine = Wav2LipEngine(Wav2LipEngineConfig(checkpoint=str(ckpt), precision="fp32"), device)
        result["rows"] += generator_rows(engine.model, device, args.batch, args.repeat)
        del engine
        result["rows"] += detector_rows(device, args.repeat)
        result["rows"] += engine_rows(ckpt, device, args.batch, args.repeat)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
