"""How far fp16 / bf16 autocast output drifts from fp32, for three kinds of random generator weights.

    python3 bench/bench_wav2lip_precision.py [--device cpu|cuda] [--batch 4]

default: PyTorch's initialisation (what reference/wav2lip.md §7 measured). calibrated: BatchNorm
running statistics taken from a forward pass of random inputs, so activations keep their spread.
affine: calibrated plus random BatchNorm scale (0.5–1.5) and shift (σ 0.1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.worker.engines.wav2lip import composite, generator  # noqa: E402
from daemon.worker.engines.wav2lip.engine import generate  # noqa: E402


def weights(kind: str, seed: int = 0) -> generator.Wav2Lip:
    torch.manual_seed(seed)
    model = generator.Wav2Lip()
    if kind != "default":
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None
                if kind == "affine":
                    torch.nn.init.uniform_(module.weight, 0.5, 1.5)
                    torch.nn.init.normal_(module.bias, 0.0, 0.1)
        model.train()
        with torch.no_grad():
            model(torch.randn(8, 1, 80, 16) * 2, torch.rand(8, 6, 96, 96))
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(1)
    audio = (torch.rand(args.batch, 1, 80, 16, generator=g) * 8 - 4).to(device)
    faces = composite.model_input(torch.rand(args.batch, 3, 96, 96, generator=g) * 255).to(device)
    for kind in ("default", "calibrated", "affine"):
        model = weights(kind).to(device)
        full = generate(model, audio, faces, "fp32")
        for precision in ("fp16", "bf16"):
            diff = (generate(model, audio, faces, precision) - full).abs()
            print(json.dumps({"weights": kind, "precision": precision, "device": str(device),
                              "output_std": round(float(full.std()), 4), "max_abs": float(diff.max()),
                              "mean_abs": float(diff.mean()),
                              "share_over_1_255": round(float((diff > 1 / 255).float().mean()), 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
