"""Face finding with the bundled LBP cascade: found on a real portrait, cached per presenter, absent → -1."""

from __future__ import annotations

import os
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
from renderkit import render

from daemon.core.config import MediaConfig
from daemon.worker.faces import FaceFinder
from daemon.worker.faces.segments import smooth
from daemon.worker.media.plan import make_plan
from daemon.worker.media.probe import probe

CFG = MediaConfig()
# the astronaut's face in the 512² original (skimage docs / reference §6: r=70, c=175, 93×93), at 256²
EXPECTED = np.array([175, 70, 268, 163]) / 2


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return float(inter / (area(a) + area(b) - inter))


def test_face_is_found_in_every_frame_of_a_moving_portrait(tmp_path: Path) -> None:
    video = g.astronaut_clip(tmp_path / "astro.mp4", seconds=2, size=256)
    info = probe(video, CFG)
    boxes, cached = FaceFinder(CFG, tmp_path / "fc").boxes(info, make_plan(info, 2.0, CFG, None, {}))
    assert boxes.shape == (50, 4) and boxes.dtype == np.int32 and not cached
    assert (boxes[:, 0] >= 0).all()
    assert min(iou(b.astype(float), EXPECTED) for b in boxes) > 0.5


def test_reused_presenter_is_analysed_once(tmp_path: Path) -> None:
    video = g.astronaut_clip(tmp_path / "astro.mp4", seconds=1, size=256)
    copy = tmp_path / "same_presenter_other_name.mp4"
    copy.write_bytes(video.read_bytes())
    (tmp_path / "one").mkdir()
    first = render(tmp_path / "one", g.tone(tmp_path / "s1.wav", 0.8), video)
    cache = tmp_path / "one" / ".lipsyncd" / "facecache"
    assert len(list(cache.glob("*.npy"))) == 1 and first.stats["face_cache_hit"] is False
    info = probe(copy, CFG)
    finder = FaceFinder(CFG, cache)
    boxes, cached = finder.boxes(info, make_plan(info, 0.8, CFG, None, {}))
    assert cached and (boxes[:, 0] >= 0).all()  # same bytes under another name: a cache hit


def test_frames_without_a_face_pass_through_and_are_counted(tmp_path: Path) -> None:
    from daemon.worker.engines.copy import CopyEngine
    from daemon.worker.engines.warp import WarpEngine

    video = g.clip(tmp_path / "pattern.mp4", seconds=1, size="128x96", audio=False)  # no face anywhere
    speech = g.speech(tmp_path / "speech.wav", "Hello there.")
    (tmp_path / "w").mkdir()
    (tmp_path / "c").mkdir()
    warped = render(tmp_path / "w", speech, video, engine=WarpEngine())
    plain = render(tmp_path / "c", speech, video, engine=CopyEngine())
    assert warped.stats["faces_missing"] == warped.stats["frames"] > 0
    assert np.array_equal(g.decode_gray(warped.path, 128, 96), g.decode_gray(plain.path, 128, 96))


def test_smoothing_interpolates_between_samples_and_keeps_gaps() -> None:
    nan = [np.nan] * 4
    samples = np.array([[0, 0, 10, 10], [10, 0, 20, 10], nan, nan, [40, 0, 50, 10]], float)
    boxes = smooth(samples, every=4, count=20)
    assert boxes[2].tolist() == pytest.approx([5, 0, 15, 10])  # halfway between samples 0 and 1
    assert boxes[5].tolist() == pytest.approx([10, 0, 20, 10])  # next to sample 1, its neighbour missing
    assert (boxes[7:14] == -1).all()  # between two missing samples: no face
    assert boxes[16:].tolist() == [[40, 0, 50, 10]] * 4


def _portrait_samples(blank: int, faces: int) -> np.ndarray:
    """`blank` grey samples of a faceless wall, then `faces` of the astronaut (face ~46 px) on it."""
    from skimage import data, transform

    rng = np.random.default_rng(7)
    wall = (96 + 8 * rng.standard_normal((blank + faces, 256, 320))).clip(0, 255).astype(np.uint8)
    head = (transform.resize(data.astronaut().mean(axis=2), (256, 256)) * 1.0).astype(np.uint8)
    wall[blank:, :, 32:288] = head
    return wall


def test_no_face_stretch_is_sampled_sparser_and_a_face_after_it_keeps_every_box(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.worker.faces import lbp

    searches: list[int] = []
    real = lbp._search
    monkeypatch.setattr(lbp, "_search", lambda gray: searches.append(1) or real(gray))
    frames = _portrait_samples(blank=44, faces=20)
    analyse = lbp.analyser()
    got = np.concatenate([analyse(frames[a:a + lbp.LBP_BATCH]) for a in range(0, 64, lbp.LBP_BATCH)])
    assert np.isnan(got[:44]).all()
    assert not np.isnan(got[44:]).any()  # skipped samples before the first face found are filled back
    assert min(iou(b, EXPECTED + [32, 0, 32, 0]) for b in got[44:]) > 0.5
    # every sample was a whole-picture search before: 44 of them on the wall alone
    assert len(searches) <= 12, len(searches)


def test_half_resolution_search_finds_a_large_face_and_refines_it_at_full_size() -> None:
    from skimage import data, transform

    from daemon.worker.faces.lbp import detect

    big = transform.resize(data.astronaut().mean(axis=2) / 255.0, (512, 512))  # face ~93 px
    box = detect(big)
    assert box is not None and iou(box, np.array([175, 70, 268, 163], float)) > 0.5


def test_the_look_near_the_last_face_follows_it_and_a_jump_falls_back_to_the_whole_picture(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from skimage import data, transform

    from daemon.worker.faces import lbp

    searches: list[int] = []
    real = lbp._search
    monkeypatch.setattr(lbp, "_search", lambda gray: searches.append(1) or real(gray))
    grey = data.astronaut().mean(axis=2) / 255.0
    small = transform.resize(grey, (256, 256))  # the face at EXPECTED, ~46 px
    last = lbp.detect(small)
    assert last is not None and len(searches) == 1
    moved = np.roll(small, 6, axis=1)  # a face_every later: a few pixels on
    box = lbp.detect(moved, last)
    assert box is not None and iou(box, EXPECTED + [6, 0, 6, 0]) > 0.5
    assert len(searches) == 1  # found near the last box: no whole-picture search
    jumped = np.roll(small, 100, axis=1)  # a cut to another shot: the face is elsewhere
    box = lbp.detect(jumped, last)
    assert box is not None and iou(box, EXPECTED + [100, 0, 100, 0]) > 0.5
    assert len(searches) == 2  # not near the last box: the whole picture found it


def test_the_face_pass_skips_non_reference_frames_of_video_with_b_frames_and_finds_the_same_faces(
        tmp_path: Path) -> None:
    from dataclasses import replace

    from daemon.worker.media.decoder import Sampling, decode_argv

    bframes = g.astronaut_clip(tmp_path / "b.mp4", seconds=4, size=256, preset="veryfast")
    flat = g.astronaut_clip(tmp_path / "p.mp4", seconds=1, size=256)  # ultrafast: no B-frames
    info, flat_info = probe(bframes, CFG), probe(flat, CFG)
    assert info.video is not None and info.video.reorder > 0 and flat_info.video.reorder == 0
    plan = make_plan(info, 4.0, CFG, None, {})
    faces = Sampling(5, 160, 160, "gray", nonref=True)
    assert "noref" in decode_argv(CFG, info, plan, 0, 20, faces)
    assert "noref" not in decode_argv(CFG, info, plan, 0, 20)  # the rendered frames: every one decoded
    assert "noref" not in decode_argv(CFG, flat_info, make_plan(flat_info, 1.0, CFG, None, {}), 0, 5, faces)
    full = replace(CFG, face_skip_nonref=False)
    assert "noref" not in decode_argv(full, info, plan, 0, 20, faces)

    skipped, _ = FaceFinder(CFG, tmp_path / "fc").boxes(info, plan)
    decoded, cached = FaceFinder(full, tmp_path / "fc").boxes(info, plan)
    assert not cached and len(list((tmp_path / "fc").glob("*.npy"))) == 2  # each under its own key
    assert skipped.shape == decoded.shape == (100, 4) and (skipped[:, 0] >= 0).all()
    # a sample shows its own frame or the one beside it: the gently moving face is where it was
    assert min(iou(a.astype(float), b.astype(float)) for a, b in zip(skipped, decoded, strict=True)) > 0.8
    assert min(iou(b.astype(float), EXPECTED) for b in skipped) > 0.5


def test_the_content_hash_is_read_once_per_unchanged_file_and_again_once_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.worker.faces import cache

    path = tmp_path / "presenter.mp4"
    path.write_bytes(b"a" * 3_000_000)
    reads: list[int] = []
    real_blake2b = cache.hashlib.blake2b

    def counting(*args: object, **kwargs: object) -> object:
        reads.append(1)
        return real_blake2b(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache.hashlib, "blake2b", counting)
    first = cache.content_hash(path)
    assert cache.content_hash(path) == first and len(reads) == 1  # the job's end asks again: no read
    st = path.stat()
    path.write_bytes(b"b" * 3_000_000)  # new content, same size, its old times put back
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.content_hash(path) == real_blake2b(b"b" * 3_000_000, digest_size=20).hexdigest() != first
    assert len(reads) == 2
