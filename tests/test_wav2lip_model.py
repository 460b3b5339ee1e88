"""The generator against an independent table-driven reference, through every accepted checkpoint format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import wav2lip_reference as ref

from daemon.worker.engines.wav2lip import checkpoint, composite, generator
from daemon.worker.engines.wav2lip.engine import generate


def realistic_random_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights whose BatchNorm statistics come from real activations, so outputs are not saturated."""
    torch.manual_seed(seed)
    model = generator.Wav2Lip()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration pass
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.1)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 80, 16) * 2, torch.rand(8, 6, 96, 96))
    return model.eval().state_dict()


# float32 through the generator's ~40 layers against the float64 reference: the rounding depends on the
# CPU's kernels (1.05-1.13e-5 with torch's AVX2 kernels on an AMD EPYC, under 1e-5 on an earlier box)
FP32_TOLERANCE = 3e-5


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return realistic_random_weights()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    audio = torch.rand(3, 1, 80, 16, generator=g) * 8 - 4
    faces = composite.model_input(torch.rand(3, 3, 96, 96, generator=g) * 255)
    return audio, faces


def save_official(state: dict[str, torch.Tensor], path: Path) -> None:
    """As wav2lip_train.py saves it, in the pre-1.6 (non-zip) format, with DataParallel-style keys."""
    model = generator.Wav2Lip()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()},
                "optimizer": optimizer.state_dict(), "global_step": 250000, "global_epoch": 42},
               path, _use_new_zipfile_serialization=False)


def save_bare(state: dict[str, torch.Tensor], path: Path) -> None:
    # some tools drop the BatchNorm counters
    trimmed = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(trimmed, path)


def save_torchscript(state: dict[str, torch.Tensor], path: Path) -> None:
    model = generator.Wav2Lip()
    model.load_state_dict(state)
    traced = torch.jit.trace(model.eval(), (torch.zeros(1, 1, 80, 16), torch.zeros(1, 6, 96, 96)))
    traced.save(str(path))


def test_state_dict_has_the_reference_keys_shapes_and_parameter_count() -> None:
    model = generator.Wav2Lip()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == ref.expected_shapes()
    assert len(ours) == 352
    assert sum(p.numel() for p in model.parameters()) == 36_298_035
    buffers = sum(v.numel() for k, v in model.state_dict().items() if "running" in k)
    assert buffers == 22_752


@pytest.mark.parametrize("save", [save_official, save_bare, save_torchscript],
                         ids=["official", "bare", "torchscript"])
def test_fp32_forward_matches_reference_after_checkpoint_round_trip(
        save, weights, inputs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "wav2lip.pth"
    save(weights, path)
    model, description = checkpoint.load_generator(path)
    audio, faces = inputs
    ours = generate(model, audio, faces, "fp32")
    expected = ref.forward(weights, audio, faces)
    assert ours.shape == (3, 3, 96, 96)
    assert float((ours.double() - expected).abs().max()) <= FP32_TOLERANCE
    with torch.no_grad():  # the same layers in float64: the wiring itself, free of float32 rounding
        exact = model.double()(audio.double(), faces.double())
    assert float((exact - expected).abs().max()) <= 1e-9
    assert 0.05 < float(expected.std()) and 0.02 < float(expected.min()) and float(expected.max()) < 0.98
    assert "36,298,035" in description


@pytest.mark.slow  # the training layout; inference never uses it
def test_training_layout_folds_time_into_the_batch(weights) -> None:  # type: ignore[no-untyped-def]
    model = generator.Wav2Lip()
    model.load_state_dict(weights)
    model.eval()
    g = torch.Generator().manual_seed(2)
    audio = torch.rand(1, 2, 1, 80, 16, generator=g) * 8 - 4
    faces = torch.rand(1, 6, 2, 96, 96, generator=g)
    with torch.no_grad():
        out = model(audio, faces)
    assert out.shape == (1, 3, 2, 96, 96)
    for t in range(2):
        expected = ref.forward(weights, audio[:, t], faces[:, :, t])
        assert float((out[:, :, t].double() - expected).abs().max()) <= FP32_TOLERANCE


def _half_vs_full(state: dict[str, torch.Tensor], audio: torch.Tensor, faces: torch.Tensor,
                  precision: str) -> torch.Tensor:
    model = generator.Wav2Lip()
    model.load_state_dict(state)
    model.eval()
    full = generate(model, audio, faces, "fp32")
    return (generate(model, audio, faces, precision) - full).abs()


def test_fp16_autocast_stays_within_one_8bit_level_of_fp32(inputs) -> None:  # type: ignore[no-untyped-def]
    # PyTorch's default initialisation, the random weights reference/wav2lip.md section 7 measured with.
    # Runs on the CPU: torch 2.13 supports fp16 convolution there (slowly), so no GPU is needed.
    torch.manual_seed(0)
    audio, faces = inputs
    diff = _half_vs_full(generator.Wav2Lip().eval().state_dict(), audio[:1], faces[:1], "fp16")
    assert 0 < float(diff.max()) <= 1 / 255  # > 0: the half path really ran in half precision


@pytest.mark.slow  # a recorded measurement, not the parity target
def test_fp16_error_on_weights_with_realistic_activations_is_recorded(weights, inputs) -> None:  # type: ignore[no-untyped-def]
    # With BatchNorm statistics taken from real activations the output spreads out (std ~0.12 instead of
    # ~0.02) and half precision errors compound through ~50 layers: measured max 0.0097-0.0113 (2.5-2.9
    # levels), mean 0.0012. This is NOT the 1/255 target; it pins the measured size so a regression shows,
    # and it is why fp16 must be re-validated on the real checkpoint (precision = "fp32" is the fallback).
    audio, faces = inputs
    diff = _half_vs_full(weights, audio[:1], faces[:1], "fp16")
    assert float(diff.mean()) <= 0.5 / 255
    assert float(diff.max()) <= 4 / 255


def test_model_input_is_bgr_with_the_lower_half_of_the_first_three_channels_masked() -> None:
    faces = torch.arange(3 * 96 * 96, dtype=torch.float32).reshape(1, 3, 96, 96) % 256
    x = composite.model_input(faces)
    assert x.shape == (1, 6, 96, 96)
    assert torch.equal(x[0, 3], faces[0, 2] / 255) and torch.equal(x[0, 5], faces[0, 0] / 255)
    assert torch.all(x[0, :3, 48:] == 0)
    assert torch.equal(x[0, :3, :48], x[0, 3:, :48])
    assert np.isclose(float(x.max()), 1.0)
