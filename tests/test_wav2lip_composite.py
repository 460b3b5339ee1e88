"""Batched crops and compositing against the per-frame F.interpolate code they replaced (one box at a time)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from daemon.worker.engines.wav2lip import composite

# boxes smaller and larger than 96 px, touching the frame's edges, one row without a face (skipped)
BOXES = np.array([[10, 12, 70, 80], [0, 0, 150, 120], [-1, -1, -1, -1], [100, 40, 160, 160],
                  [30, 100, 250, 190], [5, 7, 6, 9]], dtype=np.int64)
ROWS = np.array([0, 1, 3, 4, 5])


def frames(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 192, 256, 3), dtype=np.uint8))


def predictions(seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((len(ROWS), 3, 96, 96), dtype=np.float32))


def resize(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return F.interpolate(img.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0]


def test_crops_of_a_batch_equal_one_interpolate_per_box() -> None:
    f = frames()
    got = composite.crop_faces(f, BOXES, ROWS)
    for k, i in enumerate(ROWS):
        x1, y1, x2, y2 = BOXES[i]
        expected = resize(f[i, y1:y2, x1:x2].permute(2, 0, 1).float(), 96, 96)
        assert torch.allclose(got[k], expected, atol=1e-3), int(i)


def test_paste_of_a_batch_equals_one_box_at_a_time_and_touches_nothing_else() -> None:
    f, pred = frames(seed=2), predictions(seed=3)
    got = f.clone()
    composite.paste(got, BOXES, ROWS, pred)
    truncated = (pred * 255.0).to(torch.uint8).float()
    expected = f.clone()
    for k, i in enumerate(ROWS):
        x1, y1, x2, y2 = BOXES[i]
        face = resize(truncated[k], y2 - y1, x2 - x1).round_().clamp_(0, 255).to(torch.uint8)
        expected[i, y1:y2, x1:x2] = face.permute(1, 2, 0)
    diff = (got.int() - expected.int()).abs()
    assert int(diff.max()) <= 1 and float(diff.float().mean()) < 1e-3  # rounding ties of the resize
    assert torch.equal(got[2], f[2])
    changed = (got != f).any(-1)
    for i in ROWS:
        x1, y1, x2, y2 = BOXES[i]
        changed[i, y1:y2, x1:x2] = False
    assert not changed.any()


def test_feather_of_a_batch_equals_one_box_at_a_time_and_keeps_the_upper_face() -> None:
    f, pred = frames(seed=4), predictions(seed=5)
    top, width = 0.45, 0.2
    got = f.clone()
    composite.feather(got, BOXES, ROWS, pred, top, width)
    expected = f.clone()
    for k, i in enumerate(ROWS):
        x1, y1, x2, y2 = BOXES[i]
        h, w = int(y2 - y1), int(x2 - x1)
        face = resize(pred[k] * 255.0, h, w).permute(1, 2, 0)
        ky, kx = torch.arange(h, dtype=torch.float32)[None], torch.arange(w, dtype=torch.float32)[None]
        mask = composite.lower_face_weights(ky, kx, torch.tensor([[float(h)]]), torch.tensor([[float(w)]]),
                                            top, width)[0][:, :, None]
        region = f[i, y1:y2, x1:x2].float()
        expected[i, y1:y2, x1:x2] = (region + (face - region) * mask).round_().clamp_(0, 255).to(torch.uint8)
    diff = (got.int() - expected.int()).abs()
    assert int(diff.max()) <= 1 and float(diff.float().mean()) < 1e-3
    x1, y1, x2, y2 = BOXES[4]
    assert torch.equal(got[4, y1:y1 + int(top * (y2 - y1)), x1:x2], f[4, y1:y1 + int(top * (y2 - y1)), x1:x2])
    changed = (got != f).any(-1)
    for i in ROWS:
        x1, y1, x2, y2 = BOXES[i]
        changed[i, y1:y2, x1:x2] = False
    assert not changed.any()  # every pixel outside the boxes, and the faceless frame, exactly as before


def test_a_batch_gives_each_frame_the_result_it_gets_alone() -> None:
    f, pred = frames(seed=6), predictions(seed=7)
    together = f.clone()
    composite.feather(together, BOXES, ROWS, pred)
    for k, i in enumerate(ROWS):
        alone = f.clone()
        composite.feather(alone, BOXES, ROWS[k:k + 1], pred[k:k + 1])
        assert torch.equal(together[i], alone[i]), int(i)
