"""The engine end to end on the CPU: no-face passthrough, upstream `paste` parity, OOM retry, feathering."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import wav2lip_reference as ref
from skimage import data
from test_wav2lip_mel import speechlike
from test_wav2lip_model import realistic_random_weights
from wav2lip_reference import bilinear

from daemon.core.config import Wav2LipEngineConfig
from daemon.worker.engines.base import Chunk
from daemon.worker.engines.wav2lip import Wav2LipEngine, mel

NO_FACE = [-1, -1, -1, -1]


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return realistic_random_weights(seed=5)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, weights: dict[str, torch.Tensor]) -> Wav2LipEngineConfig:
    path = tmp_path_factory.mktemp("w2l") / "wav2lip_gan.pth"
    torch.save({"state_dict": weights}, path)
    return Wav2LipEngineConfig(checkpoint=str(path), batch_size=4)


@pytest.fixture(scope="module")
def astronaut_frames() -> torch.Tensor:
    """Six 256x256 RGB frames of the astronaut, shifted a little each frame."""
    img = torch.from_numpy(data.astronaut()[::2, ::2].copy())
    return torch.stack([torch.roll(img, shifts=(i, 2 * i), dims=(0, 1)) for i in range(6)])


BOXES = np.array([[80, 20, 170, 130], NO_FACE, [82, 22, 172, 134], [0, 150, 60, 256], NO_FACE,
                  [200, 10, 256, 70]], dtype=np.int32)


def test_a_chunk_without_any_face_is_handed_back_as_the_same_tensor(config: Wav2LipEngineConfig) -> None:
    engine = Wav2LipEngine(config, "cpu")
    frames = torch.zeros(3, 64, 64, 3, dtype=torch.uint8)
    features = engine.prepare(speechlike(1.0), 25.0, 25)
    out = engine.render(Chunk(0, frames, np.array([NO_FACE] * 3, np.int32)), features)
    assert out is frames  # the pipeline's cue that nothing needs writing back


def render(config: Wav2LipEngineConfig, frames: torch.Tensor, start: int = 0, seconds: float = 1.0,
           boxes: np.ndarray = BOXES) -> torch.Tensor:
    engine = Wav2LipEngine(config, "cpu")
    features = engine.prepare(speechlike(seconds), 25.0, 25)
    return engine.render(Chunk(start, frames.clone(), boxes.copy()), features)


def test_frames_without_a_face_come_back_unchanged_and_shape_dtype_hold(
        config: Wav2LipEngineConfig, astronaut_frames: torch.Tensor) -> None:
    engine = Wav2LipEngine(config, "cpu")
    frames = astronaut_frames.clone()
    out = engine.render(Chunk(0, frames, BOXES.copy()), engine.prepare(speechlike(1.0), 25.0, 25))
    assert torch.equal(frames, astronaut_frames)  # the input is left as it was: the pipeline diffs it
    assert out.shape == astronaut_frames.shape and out.dtype == torch.uint8
    for i in (1, 4):
        assert torch.equal(out[i], astronaut_frames[i])
    for i in (0, 2, 3, 5):
        assert not torch.equal(out[i], astronaut_frames[i])


# ---- an independent numpy transcription of inference.py's datagen + main (cv2 replaced by a bilinear
# resize with cv2's INTER_LINEAR pixel-centre convention) ----


def upstream_paste(weights: dict[str, torch.Tensor], frames_rgb: np.ndarray, boxes: np.ndarray,
                   wav: np.ndarray, fps: float) -> np.ndarray:
    m = mel.melspectrogram(wav)
    out = frames_rgb[..., ::-1].copy()  # cv2 frames are BGR
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if x1 < 0:
            continue
        start = min(int(i * (80.0 / fps)), m.shape[1] - 16)
        face = bilinear(out[i, y1:y2, x1:x2], 96, 96)
        masked = face.copy()
        masked[48:] = 0
        x = np.concatenate([masked, face], axis=2)[None].transpose(0, 3, 1, 2) / 255.0
        audio = torch.from_numpy(m[:, start:start + 16].copy())[None, None]
        pred = ref.forward(weights, audio, torch.from_numpy(x)).numpy()[0].transpose(1, 2, 0) * 255.0
        p = bilinear(pred.astype(np.uint8), y2 - y1, x2 - x1)
        out[i, y1:y2, x1:x2] = np.clip(np.round(p), 0, 255).astype(np.uint8)
    return out[..., ::-1]


def test_paste_mode_matches_an_independent_transcription_of_inference_py(
        config: Wav2LipEngineConfig, weights: dict[str, torch.Tensor],
        astronaut_frames: torch.Tensor) -> None:
    wav = speechlike(1.0)
    expected = upstream_paste(weights, astronaut_frames.numpy(), BOXES, wav, 25.0)
    engine = Wav2LipEngine(replace(config, composite="paste", precision="fp32"), "cpu")
    out = engine.render(Chunk(0, astronaut_frames.clone(), BOXES.copy()), engine.prepare(wav, 25.0, 25))
    diff = np.abs(out.numpy().astype(int) - expected.astype(int))
    assert diff.max() <= 1  # rounding ties of the final resize; the prediction itself agrees to 1e-5
    assert diff.mean() < 0.01


def test_chunk_start_selects_the_audio_window_of_the_output_timeline(
        config: Wav2LipEngineConfig, astronaut_frames: torch.Tensor) -> None:
    one = np.array([BOXES[0]])
    early = render(config, astronaut_frames[:1], start=0, seconds=3.0, boxes=one)
    late = render(config, astronaut_frames[:1], start=40, seconds=3.0, boxes=one)
    again = render(config, astronaut_frames[:1], start=40, seconds=3.0, boxes=one)
    assert not torch.equal(early, late) and torch.equal(late, again)


class OutOfMemoryAbove(torch.nn.Module):
    """The GPU-model fake: a real generator that raises CUDA's OOM for batches larger than `limit`."""

    def __init__(self, model: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.model, self.limit, self.refused = model, limit, 0

    def forward(self, audio: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        if faces.shape[0] > self.limit:
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 7.03 GiB")
        return self.model(audio, faces)


def test_out_of_memory_halves_the_batch_and_retries_the_same_frames(
        config: Wav2LipEngineConfig, astronaut_frames: torch.Tensor) -> None:
    wav = speechlike(1.0)
    frames, boxes = astronaut_frames[:3], BOXES[:3]  # two faces
    plain = Wav2LipEngine(replace(config, batch_size=1), "cpu")  # same batch as after the retries: same bits
    expected = plain.render(Chunk(0, frames.clone(), boxes.copy()), plain.prepare(wav, 25.0, 25))
    engine = Wav2LipEngine(config, "cpu")
    fake = OutOfMemoryAbove(engine.model, limit=1)
    engine.model = fake  # type: ignore[assignment]
    out = engine.render(Chunk(0, frames.clone(), boxes.copy()), engine.prepare(wav, 25.0, 25))
    assert fake.refused == 2 and engine.max_batch() == 1  # 2 faces refused, then 2 → 1
    assert torch.equal(out, expected)  # every face generated once, composited once


def test_feather_mode_keeps_the_upper_face_and_everything_outside_the_box(
        config: Wav2LipEngineConfig, astronaut_frames: torch.Tensor) -> None:
    box = np.array([[80, 20, 170, 130]], dtype=np.int32)
    out = render(replace(config, mask_top=0.5, mask_feather=0.2), astronaut_frames[:1], boxes=box)[0]
    orig = astronaut_frames[0]
    x1, y1, x2, y2 = box[0]
    changed = (out != orig).any(dim=2)
    assert changed[y1 + (y2 - y1) // 2 + 5:y2 - 5, x1 + 15:x2 - 15].float().mean() > 0.9  # the mouth region
    assert not changed[:y1 + (y2 - y1) // 2].any()  # nothing above the mask's start
    outside = changed.clone()
    outside[y1:y2, x1:x2] = False
    assert not outside.any()


def test_box_track_from_engine_config_applies_pads(config: Wav2LipEngineConfig, tmp_path: Path) -> None:
    engine = Wav2LipEngine(replace(config, pads=(5, 10, 3, 4), smooth_window=1), "cpu")
    track = engine.box_track(320, 240)
    out = np.concatenate([track.push(np.array([[100.7, 50.2, 200.9, 150.5]])), track.finish()])
    assert out.tolist() == [[97, 45, 204, 160]]


def test_face_boxes_calibrate_other_detectors_then_pad_and_keep_faceless_rows(
        config: Wav2LipEngineConfig) -> None:
    engine = Wav2LipEngine(replace(config, smooth_window=1, hold_frames=0), "cpu")
    raw = np.array([[100, 100, 200, 200], NO_FACE], dtype=np.int32)
    s3fd_like = engine.face_boxes(raw, 640, 480, geometry="s3fd")
    assert s3fd_like.tolist() == [[100, 100, 200, 210], NO_FACE]  # upstream's default pads: 10 px below
    lbp = engine.face_boxes(raw, 640, 480, geometry="lbp")
    assert lbp[0, 3] > s3fd_like[0, 3] and lbp[1].tolist() == NO_FACE  # cascade boxes stop above the chin
