"""The whole pipeline against upstream inference.py, frame by frame.

Same weights (deterministic and non-trivial: BatchNorm statistics from real activations, so the output
follows its inputs), the same clip, the same fixed box (ticket `face_box`, upstream `--box`),
`composite = "paste"`, `precision = "fp32"`, compared per frame index inside the box.

Our result is encoded lossless (x264 crf 0), so the encoder adds nothing, and we compare luma: the
H.264 result is 4:2:0, so chroma is halved by the format itself (a bgr24 → yuv420p → bgr24 round trip
of upstream's frames alone moves them by 1.9 of 255 on this clip), while luma is kept whole. What is
left is our decoder-side colour conversion (yuv420p → RGB on the device with nearest chroma, where
cv2/swscale interpolate it) feeding the model slightly different pixels, and rounding in the resizes.
Measured (CPU, fp32, on these very cases): mean |ΔY| per frame 0.97-1.23 of 255, 99th
percentile ≤ 5, at 25, 30 and 60 fps (a 120x106 box: downscaled to 96); the limits below leave room
for other CPUs' float rounding. The negative controls are what the test exists for: feeding every
frame the next (or previous) mel window moves the mean to 2.9-4.2 (2.5x the true alignment's at the
least, frame by frame), RGB instead of BGR to 6.0-6.7; each control must stay at least twice as far.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
import torch
import wav2lip_reference as ref
from renderkit import config, render
from scipy.io import wavfile
from test_wav2lip_mel import speechlike
from test_wav2lip_model import realistic_random_weights

from daemon.core.config import Wav2LipEngineConfig
from daemon.worker.engines.wav2lip import Wav2LipEngine

MEAN_LIMIT = 2.0  # mean |ΔY| of 255 per frame, inside the box (measured ≤ 1.25)
P99_LIMIT = 8  # 99th percentile of |ΔY| per frame (measured ≤ 5)
CONTROL_FACTOR = 2  # a broken alignment must be at least this many times farther, frame by frame


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    return realistic_random_weights(seed=11)


@pytest.fixture(scope="module")
def engine_config(tmp_path_factory: pytest.TempPathFactory, weights: dict[str, torch.Tensor]) -> Wav2LipEngineConfig:
    path = tmp_path_factory.mktemp("parity") / "wav2lip.pth"
    torch.save({"state_dict": weights}, path)
    return Wav2LipEngineConfig(checkpoint=str(path), composite="paste", precision="fp32", batch_size=16)


def bgr_frames(path: Path, size: int) -> np.ndarray:
    """Every frame as cv2.VideoCapture would hand it over: BGR uint8."""
    out = subprocess.run([*g.FF, "-i", str(path), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"], check=True,
                         timeout=120, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, size, size, 3)


def luma(frames: np.ndarray) -> np.ndarray:
    """Y of BGR frames as ffmpeg's swscale computes it for yuv420p (what an H.264 result would carry)."""
    n, h, w, _ = frames.shape
    out = subprocess.run([*g.FF, "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-i", "-",
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"], input=frames.tobytes(), check=True,
                         timeout=120, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(n, h, w)


@dataclass
class Case:
    ours: np.ndarray  # our result's luma plane, exactly as encoded (lossless)
    source: np.ndarray  # the presenter clip's frames, BGR, as cv2.VideoCapture would read them
    wav: np.ndarray
    box: tuple[int, int, int, int]  # top, bottom, left, right

    def differences(self, weights: dict[str, torch.Tensor], fps: float, **broken: object) -> np.ndarray:
        """Per frame index: (mean, 99th percentile) of |ΔY| between ours and upstream inside the box."""
        upstream = luma(ref.inference(weights, self.source, self.wav, fps, self.box, **broken))  # type: ignore[arg-type]
        top, bottom, left, right = self.box
        n = len(upstream)  # upstream stops ~3 frames short of the audio (reference/wav2lip.md §2.4)
        diff = np.abs(self.ours[:n, top:bottom, left:right].astype(int) - upstream[:, top:bottom, left:right])
        flat = diff.reshape(n, -1)
        return np.stack([flat.mean(axis=1), np.percentile(flat, 99, axis=1)], axis=1)


def run(tmp_path: Path, engine_config: Wav2LipEngineConfig, fps: int, size: int, box: tuple[int, ...],
        seconds: float) -> Case:
    samples = np.round(speechlike(seconds, seed=fps) * 32767).astype(np.int16)
    speech = tmp_path / "speech.wav"
    wavfile.write(speech, 16000, samples)
    video = g.astronaut_clip(tmp_path / "face.mp4", seconds=seconds + 0.5, fps=fps, size=size)
    engine = Wav2LipEngine(engine_config, "cpu")
    result = render(tmp_path, speech, video, engine=engine, options={"face_box": list(box)}, cfg=config(crf=0))
    assert result.stats["fps"] == fps and result.stats["faces_missing"] == 0
    wav = samples.astype(np.float32) / 32768.0  # librosa.load of a 16-bit 16 kHz file
    return Case(g.decode_gray(result.path, size, size), bgr_frames(video, size), wav, box)  # type: ignore[arg-type]


def assert_parity(case: Case, weights: dict[str, torch.Tensor], fps: float) -> np.ndarray:
    diff = case.differences(weights, fps)
    worst = int(np.argmax(diff[:, 0]))
    assert diff[:, 0].max() < MEAN_LIMIT and diff[:, 1].max() <= P99_LIMIT, (worst, diff[worst].tolist())
    # the generated face really differs from the source there: a pipeline that pasted nothing would fail
    top, bottom, left, right = case.box
    n = len(diff)
    source = luma(case.source[:n])[:, top:bottom, left:right]
    assert np.abs(case.ours[:n, top:bottom, left:right].astype(int) - source).mean() > 10 * MEAN_LIMIT
    return diff


def assert_control_is_far(case: Case, weights: dict[str, torch.Tensor], fps: float, matched: np.ndarray,
                          **broken: object) -> None:
    control = case.differences(weights, fps, dtype=torch.float32, **broken)
    shift = int(broken.get("window_shift", 0))  # type: ignore[call-overload]
    chunks = ref.ref_chunks(ref.ref_melspectrogram(case.wav), fps)
    # frames whose shifted window is the same window (clamped to the final one at the end) cannot tell
    telling = [i for i in range(len(chunks))
               if not np.array_equal(chunks[i], chunks[min(max(i + shift, 0), len(chunks) - 1)]) or not shift]
    assert (control[telling, 0] > CONTROL_FACTOR * matched[telling, 0]).all(), (broken, control[:, 0].tolist())
    assert len(telling) >= len(chunks) - 2 and control[telling, 0].mean() > MEAN_LIMIT


def test_every_frame_matches_upstream_inference_at_25_fps_and_broken_alignments_do_not(
        tmp_path: Path, engine_config: Wav2LipEngineConfig, weights: dict[str, torch.Tensor]) -> None:
    case = run(tmp_path, engine_config, fps=25, size=192, box=(52, 124, 60, 124), seconds=0.4)
    matched = assert_parity(case, weights, 25.0)
    assert_control_is_far(case, weights, 25.0, matched, window_shift=1)
    assert_control_is_far(case, weights, 25.0, matched, rgb=True)


@pytest.mark.slow
@pytest.mark.parametrize("fps,size,box", [(30, 192, (52, 124, 60, 124)),
                                          (60, 320, (86, 206, 100, 206))])  # a box over 96 px: downscaled
def test_every_frame_matches_upstream_inference_at_other_rates(
        tmp_path: Path, engine_config: Wav2LipEngineConfig, weights: dict[str, torch.Tensor], fps: int,
        size: int, box: tuple[int, int, int, int]) -> None:
    case = run(tmp_path, engine_config, fps=fps, size=size, box=box, seconds=0.5)
    matched = assert_parity(case, weights, float(fps))
    assert_control_is_far(case, weights, float(fps), matched, window_shift=1)
    assert_control_is_far(case, weights, float(fps), matched, window_shift=-1)
