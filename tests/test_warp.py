"""The weight-free `warp` engine: mouth motion follows the speech, nothing else moves, silence is identity."""

from __future__ import annotations

import wave
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
import torch
from renderkit import render

from daemon.core.config import Config
from daemon.core.errors import ConfigError
from daemon.worker.engines.base import Chunk
from daemon.worker.engines.copy import CopyEngine
from daemon.worker.engines.registry import load_engine
from daemon.worker.engines.warp import WarpEngine, openness

SIZE = 256
BOX = np.array([86, 32, 139, 85], np.int32)  # the astronaut's face in a 256² frame (LBP cascade)


def portrait(n: int) -> torch.Tensor:
    from skimage import data, transform

    img = (transform.resize(data.astronaut(), (SIZE, SIZE)) * 255).round().astype(np.uint8)
    return torch.from_numpy(np.repeat(img[None], n, 0))


def feathered_region(box: np.ndarray) -> np.ndarray:
    """Where the warp may act: the face's lower half down past the chin, a margin either side."""
    mask = np.zeros((SIZE, SIZE), bool)
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    mask[int(y1 + 0.65 * h):int(y1 + 1.5 * h) + 1, int(x1 - 0.05 * w) - 1:int(x2 + 0.05 * w) + 2] = True
    return mask


def test_openness_is_zero_in_silence_and_one_at_loud_speech() -> None:
    rms = np.array([0.0, 1e-5, 0.001, 0.05, 0.1, 0.2, 0.2, 0.2], np.float32)
    o = openness(rms)
    assert o[0] == o[1] == o[2] == 0.0 and o[-1] == 1.0 and 0 < o[3] < o[4] < o[5]


def test_engine_changes_only_the_lower_face_and_is_deterministic() -> None:
    frames = portrait(4)
    engine = WarpEngine(device=torch.device("cpu"))
    features = np.array([0.0, 0.5, 1.0, 1.0], np.float32)
    boxes = np.stack([BOX, BOX, BOX, [-1, -1, -1, -1]]).astype(np.int32)
    out = engine.render(Chunk(start=0, frames=frames, boxes=boxes), features)
    again = engine.render(Chunk(start=0, frames=frames, boxes=boxes), features)
    assert torch.equal(out, again)
    assert out.shape == frames.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], frames[0])  # silence
    assert torch.equal(out[3], frames[3])  # no face
    changed = (out != frames).any(-1).numpy()
    assert changed[1].sum() > 100 and changed[2].sum() > changed[1].sum()
    assert not changed[:, ~feathered_region(BOX)].any()  # bit-exact outside the feathered region


def test_whole_silent_chunk_is_returned_untouched() -> None:
    frames = portrait(3)
    out = WarpEngine(device=torch.device("cpu")).render(
        Chunk(start=5, frames=frames, boxes=np.tile(BOX, (3, 1))), np.zeros(10, np.float32))
    assert out is frames


def test_registry_loads_engines_by_name() -> None:
    assert isinstance(load_engine("warp", Config()), WarpEngine)
    assert isinstance(load_engine("copy", Config()), CopyEngine)
    with pytest.raises(ConfigError, match="worker.engine"):
        load_engine("nonesuch", Config())


def frame_energy(wav: Path, n: int, fps: float = 25.0) -> np.ndarray:
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
    step = rate / fps
    return np.array([np.sqrt(np.mean(x[int(j * step):int((j + 1) * step)] ** 2)) if j * step < len(x) else 0.0
                     for j in range(n)])


@pytest.fixture(scope="module")
def talking(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("warp")
    speech = g.speech(tmp / "speech.wav", "Hello there. This is a short test. Of the lip sync appliance.")
    video = g.astronaut_clip(tmp / "astro.mp4", seconds=2, size=SIZE)
    (tmp / "warp").mkdir()
    (tmp / "copy").mkdir()
    warped = render(tmp / "warp", speech, video, engine=WarpEngine())
    plain = render(tmp / "copy", speech, video, engine=CopyEngine())
    return {"speech": speech, "video": video, "warp": warped, "copy": plain}


@pytest.mark.slow
def test_mouth_motion_correlates_with_speech_energy(talking: dict) -> None:
    warped = g.decode_gray(talking["warp"].path, SIZE, SIZE).astype(int)
    plain = g.decode_gray(talking["copy"].path, SIZE, SIZE).astype(int)
    assert talking["warp"].stats["faces_missing"] == 0
    mouth = feathered_region(BOX)
    change = np.abs(warped - plain)[:, mouth].mean(1)
    energy = frame_energy(talking["speech"], len(change))
    r = np.corrcoef(energy, change)[0, 1]
    assert r >= 0.8, f"Pearson r = {r:.3f}"


@pytest.mark.slow
def test_pixels_outside_the_feathered_region_change_only_by_codec_noise(talking: dict) -> None:
    source = g.decode_gray(talking["video"], SIZE, SIZE).astype(int)
    n = len(source)  # output frames 0..n-1 show source frames 0..n-1 (the loop starts after)
    warped = g.decode_gray(talking["warp"].path, SIZE, SIZE)[:n].astype(int)
    plain = g.decode_gray(talking["copy"].path, SIZE, SIZE)[:n].astype(int)
    outside = ~feathered_region(BOX)
    codec_noise = np.abs(plain - source)[:, outside].mean()
    warp_error = np.abs(warped - source)[:, outside].mean()
    assert warp_error <= codec_noise * 1.1 + 0.1, (warp_error, codec_noise)


def test_silent_speech_leaves_the_video_exactly_as_the_copy_engine(tmp_path: Path) -> None:
    silence = tmp_path / "silence.wav"
    g.ff("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "1.2", silence)
    video = g.astronaut_clip(tmp_path / "astro.mp4", seconds=1, size=SIZE)
    (tmp_path / "w").mkdir()
    (tmp_path / "c").mkdir()
    warped = render(tmp_path / "w", silence, video, engine=WarpEngine())
    plain = render(tmp_path / "c", silence, video, engine=CopyEngine())
    assert np.array_equal(g.decode_gray(warped.path, SIZE, SIZE), g.decode_gray(plain.path, SIZE, SIZE))


@pytest.mark.gpu
def test_warp_and_frame_conversion_on_cuda_match_cpu() -> None:
    from daemon.worker.engines import frames as yuv

    assert torch.cuda.is_available()
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    frames = portrait(8)
    buf = np.empty((8, SIZE * SIZE * 3 // 2), np.uint8)
    buf[:, :SIZE * SIZE] = frames[..., 1].reshape(8, -1).numpy()
    buf[:, SIZE * SIZE:] = 128
    rgb_cpu, rgb_gpu = yuv.to_rgb(buf, SIZE, SIZE, cpu), yuv.to_rgb(buf, SIZE, SIZE, gpu)
    assert rgb_gpu.device.type == "cuda" and torch.equal(rgb_gpu.cpu(), rgb_cpu)
    features = np.linspace(0, 1, 8, dtype=np.float32)
    boxes = np.tile(BOX, (8, 1))
    out_cpu = WarpEngine(device=cpu).render(Chunk(0, rgb_cpu, boxes), features)
    out_gpu = WarpEngine(device=gpu).render(Chunk(0, rgb_gpu, boxes), features)
    assert (out_gpu.cpu().int() - out_cpu.int()).abs().max() <= 1
    outside = torch.from_numpy(~feathered_region(BOX))
    assert torch.equal(out_gpu.cpu()[:, outside], rgb_cpu[:, outside])
    back_cpu, back_gpu = buf.copy(), buf.copy()
    yuv.write_back(back_cpu, SIZE, SIZE, rgb_cpu, out_cpu)
    yuv.write_back(back_gpu, SIZE, SIZE, rgb_gpu, out_gpu)
    assert np.abs(back_gpu.astype(int) - back_cpu).max() <= 2


def test_speech_envelope_from_a_memory_map_matches_a_plain_computation(tmp_path: Path) -> None:
    from daemon.worker.engines.envelope import frame_rms

    n = 16000 * 30
    x = np.random.default_rng(0).standard_normal(n).astype("<f4") * np.linspace(0, 1, n, dtype="<f4")
    path = tmp_path / "speech.f32"
    path.write_bytes(b"\0" * 44 + x.tobytes())  # a header in front, like our WAV
    mapped = np.memmap(path, dtype="<f4", mode="r", offset=44, shape=(len(x),))
    rms = frame_rms(mapped, 30000 / 1001, 900)
    step = 16000 * 1001 / 30000
    naive = [np.sqrt(np.mean(x[round(j * step):round((j + 1) * step)].astype(np.float64) ** 2))
             for j in range(900)]
    assert np.allclose(rms, naive, rtol=1e-5, atol=1e-7)
    longer = frame_rms(mapped, 25, 800)  # 32 s of frames over 30 s of audio
    assert longer[:750].min() > 0 and (longer[751:] == 0).all()
