"""yuv420p ⇄ RGB conversion of the pipeline's buffers against a plain NumPy transcription, byte for byte."""

from __future__ import annotations

import numpy as np
import torch

from daemon.worker.engines import frames as yuv

W, H = 64, 48


def random_buffer(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, W * H * 3 // 2), dtype=np.uint8)


def planes(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(buf)
    y = buf[:, :W * H].reshape(n, H, W)
    u = buf[:, W * H:W * H * 5 // 4].reshape(n, H // 2, W // 2)
    v = buf[:, W * H * 5 // 4:].reshape(n, H // 2, W // 2)
    return y, u, v


def numpy_rgb(buf: np.ndarray) -> np.ndarray:
    """BT.601 limited range, every chroma sample repeated over its 2×2 block, float32 like the pipeline."""
    y, u, v = (p.astype(np.float32) for p in planes(buf))
    luma = (y - np.float32(16.0)) * np.float32(1.164)
    cu = np.repeat(np.repeat(u - np.float32(128.0), 2, 1), 2, 2)
    cv = np.repeat(np.repeat(v - np.float32(128.0), 2, 1), 2, 2)
    terms = (np.float32(1.596) * cv, np.float32(-0.392) * cu + np.float32(-0.813) * cv, np.float32(2.017) * cu)
    return np.stack([np.clip(np.round(luma + t), 0, 255).astype(np.uint8) for t in terms], -1)


def numpy_write_back(buf: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """New luma where a pixel changed, new chroma (block mean) where any of its 4 pixels changed."""
    out = buf.copy()
    y, u, v = planes(out)
    hit = (before != after).any(-1)
    rgb = after.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = np.clip(np.round(16.0 + 0.257 * r + 0.504 * g + 0.098 * b), 0, 255).astype(np.uint8)
    y[hit] = luma[hit]
    mean = (rgb[:, 0::2, 0::2] + rgb[:, 0::2, 1::2] + rgb[:, 1::2, 0::2] + rgb[:, 1::2, 1::2]) * np.float32(0.25)
    r, g, b = mean[..., 0], mean[..., 1], mean[..., 2]
    hit2 = hit[:, 0::2, 0::2] | hit[:, 0::2, 1::2] | hit[:, 1::2, 0::2] | hit[:, 1::2, 1::2]
    cb = np.clip(np.round(128.0 - 0.148 * r - 0.291 * g + 0.439 * b), 0, 255).astype(np.uint8)
    cr = np.clip(np.round(128.0 + 0.439 * r - 0.368 * g - 0.071 * b), 0, 255).astype(np.uint8)
    u[hit2], v[hit2] = cb[hit2], cr[hit2]
    return out


def test_to_rgb_matches_numpy_for_the_whole_frame_and_for_a_region() -> None:
    buf = random_buffer(5)
    whole = yuv.to_rgb(buf, W, H, torch.device("cpu"))
    assert whole.dtype == torch.uint8 and whole.shape == (5, H, W, 3)
    assert np.array_equal(whole.numpy(), numpy_rgb(buf))
    region = (10, 6, 40, 30)
    part = yuv.to_rgb(buf, W, H, torch.device("cpu"), region)
    assert np.array_equal(part.numpy(), numpy_rgb(buf)[:, 6:30, 10:40])


def test_to_rgb_in_small_groups_equals_one_group(monkeypatch) -> None:
    buf = random_buffer(7, seed=1)
    one = yuv.to_rgb(buf, W, H, torch.device("cpu"))
    monkeypatch.setattr(yuv, "_group", lambda pixels, device: 3)  # 3 + 3 + 1 frames
    assert torch.equal(yuv.to_rgb(buf, W, H, torch.device("cpu")), one)


def test_write_back_changes_only_what_the_engine_changed(monkeypatch) -> None:
    buf = random_buffer(6, seed=2)
    before = torch.from_numpy(numpy_rgb(buf))
    after = before.clone()
    rng = np.random.default_rng(3)
    after[1, 5:9, 7:12] = torch.from_numpy(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    after[4, 20:41, 30:61] = 200  # frames 0, 2, 3 and 5 untouched
    after[4, 33, 47, 2] = 17  # a single odd pixel inside
    expected = numpy_write_back(buf, before.numpy(), after.numpy())
    for one_frame_per_step in (False, True):  # one vectorised step, then one frame per step
        if one_frame_per_step:
            monkeypatch.setattr(yuv, "_group", lambda pixels, device: 1)
        got = buf.copy()
        assert yuv.write_back(got, W, H, before, after) == 2
        assert np.array_equal(got, expected)
    assert np.array_equal(got[[0, 2, 3, 5]], buf[[0, 2, 3, 5]])


def test_write_back_of_a_region_lands_at_its_offset() -> None:
    buf = random_buffer(2, seed=4)
    region = (16, 8, 48, 40)
    before = yuv.to_rgb(buf, W, H, torch.device("cpu"), region)
    after = before.clone()
    after[0, 3:7, 2:9] = 90
    whole_before = torch.from_numpy(numpy_rgb(buf))
    whole_after = whole_before.clone()
    whole_after[0, 8 + 3:8 + 7, 16 + 2:16 + 9] = 90
    got = buf.copy()
    assert yuv.write_back(got, W, H, before, after, region) == 1
    assert np.array_equal(got, numpy_write_back(buf, whole_before.numpy(), whole_after.numpy()))


def test_write_back_of_an_unchanged_batch_is_a_no_op() -> None:
    buf = random_buffer(3, seed=5)
    rgb = yuv.to_rgb(buf, W, H, torch.device("cpu"))
    got = buf.copy()
    assert yuv.write_back(got, W, H, rgb, rgb.clone()) == 0
    assert np.array_equal(got, buf)
