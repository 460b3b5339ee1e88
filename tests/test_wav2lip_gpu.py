"""The engine on CUDA (run on the GPU machine: pytest -m gpu): fp16 + channels_last vs the fp32 reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_wav2lip_mel import speechlike
from test_wav2lip_model import realistic_random_weights

from daemon.core.config import Wav2LipEngineConfig
from daemon.worker.engines.base import Chunk, Engine
from daemon.worker.engines.wav2lip import Wav2LipEngine, detection, s3fd

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Wav2LipEngineConfig:
    path = tmp_path_factory.mktemp("gpu") / "wav2lip.pth"
    torch.save({"state_dict": realistic_random_weights(seed=11)}, path)
    return Wav2LipEngineConfig(checkpoint=str(path), composite="paste")


def test_fp16_engine_on_cuda_stays_close_to_the_fp32_reference(config: Wav2LipEngineConfig) -> None:
    frames = torch.randint(0, 256, (16, 360, 640, 3), dtype=torch.uint8, device="cuda")
    boxes = np.tile(np.array([[260, 60, 380, 200]], np.int32), (16, 1))
    outs = {}
    for precision in ("fp32", "fp16"):
        engine: Engine = Wav2LipEngine(replace(config, precision=precision), "cuda")
        features = engine.prepare(speechlike(2.0), 25.0, 50)
        outs[precision] = engine.render(Chunk(0, frames, boxes), features).int()
    diff = (outs["fp16"] - outs["fp32"]).abs()
    assert outs["fp16"].shape == frames.shape
    # pasted pixels: resize of uint8-truncated predictions; 3 levels is the CPU-measured worst case
    # on weights with realistic activations (bench/RESULTS.md), the mean must stay well below one level
    assert int(diff.max()) <= 4 and float(diff.float().mean()) < 0.5


def test_s3fd_on_cuda_finds_the_same_boxes_as_on_the_cpu() -> None:
    torch.manual_seed(3)
    net = s3fd.S3FD().eval()
    with torch.no_grad():
        for name, _ch, _conf in s3fd._HEADS:
            getattr(net, f"{name}_mbox_conf").bias[-1] += 0.3
    frames = torch.randint(0, 256, (4, 120, 160, 3), dtype=torch.uint8)
    cpu = detection.S3FDDetector(net, torch.device("cpu")).detect(frames)
    gpu = detection.S3FDDetector(net, torch.device("cuda"), half=False).detect(frames.cuda())
    assert np.abs(cpu - gpu).max() <= 1


def test_the_model_stays_resident_on_the_gpu_across_jobs(config: Wav2LipEngineConfig) -> None:
    engine = Wav2LipEngine(config, "cuda")
    first = engine.model
    for job in range(2):
        features = engine.prepare(speechlike(2.0 + job), 25.0, 50)
        frames = torch.zeros(2, 96, 96, 3, dtype=torch.uint8, device="cuda")
        out = engine.render(Chunk(0, frames, np.array([[0, 0, 96, 96]] * 2, np.int32)), features)
        assert out.is_cuda and out.shape == frames.shape
    assert engine.model is first and next(first.parameters()).is_cuda


def test_the_mel_filled_on_the_gpu_from_its_own_thread_equals_the_whole_one() -> None:
    from daemon.worker.engines.wav2lip import mel
    from daemon.worker.engines.wav2lip.engine import MelFeatures

    wav = speechlike(70.0, seed=9)  # more than one 4096-column block after the first
    whole = mel.pad_to_window(mel.melspectrogram(wav))
    features = MelFeatures(wav, 25.0, 1750, "cuda")
    last = features.windows(np.array([1749, 0]))  # the last frame first: waits for the whole mel
    assert last.device.type == "cuda"
    starts = mel.window_starts(whole.shape[1], 25.0, 1750)
    expected = np.stack([whole[:, starts[1749]:starts[1749] + 16], whole[:, :16]])[:, None]
    assert np.array_equal(last.cpu().numpy(), expected)
    assert np.array_equal(features.mel.cpu().numpy(), whole)
