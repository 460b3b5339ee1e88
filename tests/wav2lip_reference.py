"""An independent, table-driven Wav2Lip forward pass (functional, straight from reference/wav2lip.md §1).

It shares no code with daemon/worker/engines/wav2lip: it reads weights by key from a state dict and
runs F.conv2d / F.batch_norm in the order the reference tables give.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# (key prefix, cin, cout, kernel, stride, padding, residual)
FACE_ENCODER: list[list[tuple[Any, ...]]] = [
    [("0.0", 6, 16, 7, 1, 3, False)],
    [("1.0", 16, 32, 3, 2, 1, False), ("1.1", 32, 32, 3, 1, 1, True), ("1.2", 32, 32, 3, 1, 1, True)],
    [("2.0", 32, 64, 3, 2, 1, False), ("2.1", 64, 64, 3, 1, 1, True), ("2.2", 64, 64, 3, 1, 1, True),
     ("2.3", 64, 64, 3, 1, 1, True)],
    [("3.0", 64, 128, 3, 2, 1, False), ("3.1", 128, 128, 3, 1, 1, True), ("3.2", 128, 128, 3, 1, 1, True)],
    [("4.0", 128, 256, 3, 2, 1, False), ("4.1", 256, 256, 3, 1, 1, True), ("4.2", 256, 256, 3, 1, 1, True)],
    [("5.0", 256, 512, 3, 2, 1, False), ("5.1", 512, 512, 3, 1, 1, True)],
    [("6.0", 512, 512, 3, 1, 0, False), ("6.1", 512, 512, 1, 1, 0, False)],
]
AUDIO_ENCODER: list[tuple[Any, ...]] = [
    ("0", 1, 32, 3, 1, 1, False), ("1", 32, 32, 3, 1, 1, True), ("2", 32, 32, 3, 1, 1, True),
    ("3", 32, 64, 3, (3, 1), 1, False), ("4", 64, 64, 3, 1, 1, True), ("5", 64, 64, 3, 1, 1, True),
    ("6", 64, 128, 3, 3, 1, False), ("7", 128, 128, 3, 1, 1, True), ("8", 128, 128, 3, 1, 1, True),
    ("9", 128, 256, 3, (3, 2), 1, False), ("10", 256, 256, 3, 1, 1, True),
    ("11", 256, 512, 3, 1, 0, False), ("12", 512, 512, 1, 1, 0, False),
]
# decoder block: (first layer: prefix, cin, cout, k, s, p, output_padding or None for a plain conv), n res
DECODER: list[tuple[Any, ...]] = [
    (("0.0", 512, 512, 1, 1, 0, None), 0, 512),
    (("1.0", 1024, 512, 3, 1, 0, 0), 1, 512),
    (("2.0", 1024, 512, 3, 2, 1, 1), 2, 512),
    (("3.0", 768, 384, 3, 2, 1, 1), 2, 384),
    (("4.0", 512, 256, 3, 2, 1, 1), 2, 256),
    (("5.0", 320, 128, 3, 2, 1, 1), 2, 128),
    (("6.0", 160, 64, 3, 2, 1, 1), 2, 64),
]


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict key and shape the reference tables imply."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, cin: int, cout: int, k: int, transpose: bool = False) -> None:
        shapes[f"{prefix}.conv_block.0.weight"] = (cin, cout, k, k) if transpose else (cout, cin, k, k)
        shapes[f"{prefix}.conv_block.0.bias"] = (cout,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.conv_block.1.{name}"] = (cout,)
        shapes[f"{prefix}.conv_block.1.num_batches_tracked"] = ()

    for block in FACE_ENCODER:
        for p, cin, cout, k, _s, _p, _r in block:
            conv(f"face_encoder_blocks.{p}", cin, cout, k)
    for p, cin, cout, k, _s, _p, _r in AUDIO_ENCODER:
        conv(f"audio_encoder.{p}", cin, cout, k)
    for i, ((p, cin, cout, k, _s, _p, op), n_res, ch) in enumerate(DECODER):
        conv(f"face_decoder_blocks.{p}", cin, cout, k, transpose=op is not None)
        for j in range(1, n_res + 1):
            conv(f"face_decoder_blocks.{i}.{j}", ch, ch, 3)
    conv("output_block.0", 80, 32, 3)
    shapes["output_block.1.weight"] = (3, 32, 1, 1)
    shapes["output_block.1.bias"] = (3,)
    return shapes


def _layer(sd: dict[str, torch.Tensor], prefix: str, x: torch.Tensor, stride: Any, padding: int,
           residual: bool = False, output_padding: int | None = None) -> torch.Tensor:
    w, b = sd[f"{prefix}.conv_block.0.weight"], sd[f"{prefix}.conv_block.0.bias"]
    if output_padding is None:
        y = F.conv2d(x, w, b, stride, padding)
    else:
        y = F.conv_transpose2d(x, w, b, stride, padding, output_padding)
    bn = f"{prefix}.conv_block.1"
    y = F.batch_norm(y, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"],
                     sd[f"{bn}.bias"], training=False, eps=1e-5)
    if residual:
        y = y + x
    return F.relu(y)


def forward(sd: dict[str, torch.Tensor], audio: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B,1,80,16) mel + (B,6,96,96) faces → (B,3,96,96), in float64 for a tight reference."""
    sd = {k: v.double() for k, v in sd.items()}
    a = audio.double()
    for p, _cin, _cout, _k, s, pad, res in AUDIO_ENCODER:
        a = _layer(sd, f"audio_encoder.{p}", a, s, pad, res)
    skips, f = [], faces.double()
    for block in FACE_ENCODER:
        for p, _cin, _cout, _k, s, pad, res in block:
            f = _layer(sd, f"face_encoder_blocks.{p}", f, s, pad, res)
        skips.append(f)
    x = a
    for i, ((p, _cin, _cout, _k, s, pad, op), n_res, _ch) in enumerate(DECODER):
        x = _layer(sd, f"face_decoder_blocks.{p}", x, s, pad, output_padding=op)
        for j in range(1, n_res + 1):
            x = _layer(sd, f"face_decoder_blocks.{i}.{j}", x, 1, 1, residual=True)
        x = torch.cat([x, skips.pop()], dim=1)
    x = _layer(sd, "output_block.0", x, 1, 1)
    x = F.conv2d(x, sd["output_block.1.weight"], sd["output_block.1.bias"])
    return torch.sigmoid(x)
