"""Face boxes: S3FD's batched decode vs upstream's loop + NMS, smoothing vs upstream, OOM fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from daemon.worker.engines.wav2lip import detection, s3fd, track

# ---- upstream, transcribed: face_detection/detection/sfd/{detect.py,bbox.py} and inference.py ----


def ref_nms(dets: np.ndarray, thresh: float) -> list[int]:
    if len(dets) == 0:
        return []
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1, yy1 = np.maximum(x1[i], x1[order[1:]]), np.maximum(y1[i], y1[order[1:]])
        xx2, yy2 = np.minimum(x2[i], x2[order[1:]]), np.minimum(y2[i], y2[order[1:]])
        w, h = np.maximum(0.0, xx2 - xx1 + 1), np.maximum(0.0, yy2 - yy1 + 1)
        ovr = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def ref_batch_detect(net: s3fd.S3FD, imgs_bgr: np.ndarray) -> list[tuple[int, int, int, int] | None]:
    imgs = imgs_bgr[..., ::-1] - np.array([104, 117, 123])  # api.py reverses channels, detect.py subtracts
    x = torch.from_numpy(imgs.transpose(0, 3, 1, 2).copy()).float()
    with torch.no_grad():
        olist = net(x)
    for i in range(len(olist) // 2):
        olist[i * 2] = F.softmax(olist[i * 2], dim=1)
    bboxlist = []
    batch = x.shape[0]
    for i in range(len(olist) // 2):
        ocls, oreg = olist[i * 2], olist[i * 2 + 1]
        stride = 2 ** (i + 2)
        for _img, hindex, windex in zip(*np.where(ocls[:, 1, :, :].numpy() > 0.05), strict=True):
            axc, ayc = stride / 2 + windex * stride, stride / 2 + hindex * stride
            score = ocls[:, 1, hindex, windex]
            loc = oreg[:, :, hindex, windex].contiguous().view(batch, 1, 4)[:, 0]
            priors = torch.tensor([[axc, ayc, stride * 4.0, stride * 4.0]])
            boxes = torch.cat((priors[:, :2] + loc[:, :2] * 0.1 * priors[:, 2:],
                               priors[:, 2:] * torch.exp(loc[:, 2:] * 0.2)), 1)
            boxes[:, :2] -= boxes[:, 2:] / 2
            boxes[:, 2:] += boxes[:, :2]
            bboxlist.append(torch.cat([boxes, score.unsqueeze(1)], 1).numpy())
    arr = np.array(bboxlist) if bboxlist else np.zeros((1, batch, 5))
    results: list[tuple[int, int, int, int] | None] = []
    for i in range(batch):
        dets = arr[:, i, :]
        kept = [d for d in dets[ref_nms(dets, 0.3)] if d[-1] > 0.5]
        if not kept:
            results.append(None)
            continue
        x1, y1, x2, y2 = map(int, np.clip(kept[0], 0, None)[:-1])
        results.append((x1, y1, x2, y2))
    return results


def ref_smoothened(boxes: np.ndarray, T: int) -> np.ndarray:  # noqa: N803 - upstream's name
    for i in range(len(boxes)):
        window = boxes[len(boxes) - T:] if i + T > len(boxes) else boxes[i:i + T]
        boxes[i] = np.mean(window, axis=0)
    return boxes


def ref_face_detect(rects: list[tuple[int, ...]], w: int, h: int, pads: tuple[int, int, int, int],
                    nosmooth: bool = False) -> np.ndarray:
    pady1, pady2, padx1, padx2 = pads
    results = []
    for rect in rects:
        y1, y2 = max(0, rect[1] - pady1), min(h, rect[3] + pady2)
        x1, x2 = max(0, rect[0] - padx1), min(w, rect[2] + padx2)
        results.append([x1, y1, x2, y2])
    boxes = np.array(results)
    return boxes if nosmooth else ref_smoothened(boxes, T=5)


# ---- tests ----


@pytest.fixture(scope="module")
def net() -> s3fd.S3FD:
    torch.manual_seed(3)
    model = s3fd.S3FD().eval()
    with torch.no_grad():  # make a face-probability peak likely: bias the face class up a little
        for name, _ch, _conf in s3fd._HEADS:
            getattr(model, f"{name}_mbox_conf").bias[-1] += 0.3
    return model


def test_s3fd_has_the_reference_parameter_count() -> None:
    assert sum(p.numel() for p in s3fd.S3FD().parameters()) == 22_459_110


def test_batched_device_decode_picks_the_same_box_as_upstream_loop_and_nms(net: s3fd.S3FD) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 96, 128, 3), dtype=np.uint8)
    expected = ref_batch_detect(net, frames[..., ::-1].copy())
    ours = detection.S3FDDetector(net, torch.device("cpu")).detect(torch.from_numpy(frames))
    assert any(e is not None for e in expected)
    for row, exp in zip(ours, expected, strict=True):
        if exp is None:
            assert row.tolist() == [-1, -1, -1, -1]
        else:
            assert np.abs(row - np.array(exp)).max() <= 1  # int() of float32 vs float64 decode


@pytest.mark.parametrize("n", [1, 3, 4, 5, 6, 17])
@pytest.mark.parametrize("nosmooth", [False, True])
def test_track_equals_upstream_pads_and_smoothing(n: int, nosmooth: bool) -> None:
    rng = np.random.default_rng(n)
    rects = [tuple(int(v) for v in (x, y, x + 80 + d, y + 90 + d))
             for x, y, d in zip(rng.integers(0, 60, n), rng.integers(0, 40, n), rng.integers(-5, 5, n),
                                strict=True)]
    expected = ref_face_detect(rects, 200, 150, (0, 10, 0, 0), nosmooth)
    ours = track.smooth_all(np.array(rects, float), 200, 150, (0, 10, 0, 0), window=1 if nosmooth else 5)
    assert ours.tolist() == expected.tolist()


def test_streaming_track_in_uneven_chunks_equals_the_whole_array() -> None:
    rng = np.random.default_rng(7)
    raw = np.cumsum(rng.normal(0, 2, size=(50, 4)), axis=0) + [100, 80, 200, 190]
    whole = track.smooth_all(raw, 400, 300)
    stream = track.BoxTrack(400, 300)
    parts, start = [], 0
    for size in (1, 7, 2, 13, 27):
        parts.append(stream.push(raw[start:start + size]))
        start += size
    parts.append(stream.finish())
    assert np.concatenate(parts).tolist() == whole.tolist()


def test_short_detection_gaps_hold_the_last_box_and_long_gaps_pass_frames_through() -> None:
    box = [100.0, 50.0, 180.0, 150.0]
    raw = np.array([box] + [[-1.0] * 4] * 3 + [box] + [[-1.0] * 6] * 0 + [[-1.0] * 4] * 6)
    out = track.smooth_all(raw, 400, 300, pads=(0, 0, 0, 0), window=1, hold=3)
    assert out[:5].tolist() == [[100, 50, 180, 150]] * 5
    assert out[5:8].tolist() == [[100, 50, 180, 150]] * 3
    assert out[8:].tolist() == [[-1, -1, -1, -1]] * 3


def test_calibration_fit_recovers_a_known_geometry_and_leaves_no_face_rows() -> None:
    rng = np.random.default_rng(1)
    xy = rng.uniform(50, 300, size=(20, 2))
    wh = rng.uniform(60, 160, size=(20, 2))
    theirs = np.concatenate([xy, xy + wh], axis=1)
    truth = detection.BoxCalibration(dx=0.02, dy=0.1, sx=0.95, sy=1.2)
    target = detection.calibrate(theirs, truth)
    fitted = detection.fit_calibration(theirs, target)
    assert np.allclose([fitted.dx, fitted.dy, fitted.sx, fitted.sy], [0.02, 0.1, 0.95, 1.2])
    assert detection.calibrate(np.array([[-1.0] * 4]), truth).tolist() == [[-1, -1, -1, -1]]


class MemoryLimitedDetector:
    """The GPU fake: finds a fixed box, but runs out of memory above `pixels` per call."""

    geometry = "s3fd"

    def __init__(self, pixels: int) -> None:
        self.pixels, self.seen_heights = pixels, []  # type: ignore[var-annotated]

    def detect(self, frames: torch.Tensor) -> np.ndarray:
        n, h, w = frames.shape[:3]
        if n * h * w > self.pixels:
            raise torch.OutOfMemoryError("CUDA out of memory")
        self.seen_heights.append(h)
        return np.tile(np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]]), (n, 1))


def test_detection_out_of_memory_shrinks_batch_then_resolution_and_keeps_full_frame_boxes() -> None:
    frames = torch.zeros(8, 720, 1280, 3, dtype=torch.uint8)
    fake = MemoryLimitedDetector(pixels=300 * 534)
    finder = detection.FaceFinder(fake, detect_height=480, batch=4)
    boxes = finder.find(frames)
    assert finder.detect_height < 480 and finder.batch == 1
    assert set(fake.seen_heights) == {finder.detect_height}
    assert np.allclose(boxes, [[320, 180, 960, 540]] * 8, atol=3)


def test_detection_downscales_large_frames_before_detecting() -> None:
    frames = torch.full((2, 1080, 1920, 3), 128, dtype=torch.uint8)
    small, scale = detection.downscale(frames, 480)
    assert small.shape == (2, 480, 853, 3) and small.dtype == torch.uint8 and np.isclose(scale, 480 / 1080)
    assert int(small.float().std()) == 0 and int(small[0, 0, 0, 0]) == 128
