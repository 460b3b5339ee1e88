"""The face pass in parallel segments: seeked decoders deliver the serial samples, boxes agree, errors surface.

Also the S3FD face pass: with its checkpoint configured the renderer detects with S3FD, caches under its
own key, and hands `geometry="s3fd"` to the engine's box refinement.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
from conftest import ffmpeg_children
from renderkit import render
from test_media_faces import iou

from daemon.core.config import Config, MediaConfig
from daemon.core.errors import EnvironmentFault, JobRejected
from daemon.worker.faces import FaceFinder
from daemon.worker.faces.analysis import decode_segment, face_threads
from daemon.worker.faces.sampling import Samples
from daemon.worker.faces.segments import final_rows, segments, smooth, smooth_range
from daemon.worker.media.plan import make_plan
from daemon.worker.media.probe import probe


def media(**kw: object) -> MediaConfig:
    return replace(MediaConfig(), **kw)  # type: ignore[arg-type]


def test_segments_grow_from_a_short_first_one_to_an_even_share_per_thread() -> None:
    assert segments(1, 4) == [(0, 1)]
    assert segments(12, 8) == [(0, 12)]  # too short for a second segment
    assert segments(30, 8) == [(0, 8), (8, 30)]  # no tail shorter than the segment before it
    assert segments(125, 1) == [(0, 8), (8, 24), (24, 56), (56, 125)]
    # 300 samples, 8 threads: doubling stops at max(40, 300 / 8) samples
    assert segments(300, 8) == [(0, 8), (8, 24), (24, 56), (56, 96), (96, 136), (136, 176), (176, 216),
                                (216, 256), (256, 300)]
    for wanted in (1, 7, 40, 299, 9000):
        for threads in (1, 3, 8):
            parts = segments(wanted, threads)
            assert parts[0][0] == 0 and parts[-1][1] == wanted
            assert all(a < b for a, b in parts)
            assert all(b == c for (_, b), (c, _) in zip(parts, parts[1:], strict=False))
            assert max(b - a for a, b in parts) <= max(40, -(-wanted // threads)) * 2
    assert face_threads(media(face_threads=5)) == 5
    assert 1 <= face_threads(media(face_threads=0)) <= 8


def test_rows_from_a_prefix_of_the_samples_equal_rows_from_all_of_them() -> None:
    rng = np.random.default_rng(7)
    samples = rng.uniform(10, 100, (40, 4))
    samples[[5, 6, 17, 30]] = np.nan  # faceless samples change the median and the interpolation rules
    every, count = 5, 198
    whole = smooth(samples, every, count)
    for prefix in range(0, 41):
        fixed = final_rows(prefix, 40, every, count)
        assert np.array_equal(smooth_range(samples[:prefix], every, 0, fixed), whole[:fixed]), prefix
    assert final_rows(40, 40, every, count) == count and final_rows(39, 40, every, count) == 185


class Recorder:
    """An analyser factory that keeps every sample it is shown (and finds no face)."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def __call__(self):  # type: ignore[no-untyped-def]
        def analyse(frames: np.ndarray) -> np.ndarray:
            self.frames.extend(f.copy() for f in frames)
            return np.full((len(frames), 4), np.nan)
        return analyse


@pytest.mark.parametrize("pix_fmt", ["gray", "rgb24"])
def test_seeked_segments_deliver_the_serial_samples_byte_for_byte(tmp_path: Path, pix_fmt: str) -> None:
    # moving picture with a frame counter, B-frames and keyframes every 37 frames: segment starts land
    # mid-GOP, so only a frame-accurate seek gives the same pictures
    video = g.clip(tmp_path / "motion.mp4", seconds=10, size="160x120", audio=False,
                   vcodec=("-c:v", "libx264", "-preset", "veryfast", "-g", "37", "-pix_fmt", "yuv420p"))
    cfg = media(face_every=2, face_threads=4)
    info = probe(video, cfg)
    plan = make_plan(info, 10.0, cfg, None, {})
    shape = (60, 80) if pix_fmt == "gray" else (60, 80, 3)
    wanted = -(-plan.frames // 2)
    parts = segments(wanted, face_threads(cfg))
    assert len(parts) >= 3
    stop = threading.Event()
    every_frame, serial, parallel = Recorder(), Recorder(), Recorder()
    decode_segment(cfg, info, plan, Samples(80, 60, pix_fmt, 7, every_frame), (0, plan.frames), 1, stop)
    decode_segment(cfg, info, plan, Samples(80, 60, pix_fmt, 7, serial), (0, wanted), 2, stop)
    for part in parts:
        decode_segment(cfg, info, plan, Samples(80, 60, pix_fmt, 7, parallel), part, 2, stop)
    assert len(serial.frames) == len(parallel.frames) == wanted
    assert serial.frames[0].shape == shape
    # sampling (select before scale) yields the very pixels of frames 0, 2, 4... of a full decode
    assert all(np.array_equal(a, b) for a, b in zip(every_frame.frames[::2], serial.frames, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(serial.frames, parallel.frames, strict=True))
    assert not all(np.array_equal(serial.frames[0], f) for f in serial.frames[1:])  # it does move


@pytest.mark.slow
def test_segmented_boxes_match_one_serial_pass_on_a_moving_portrait(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.worker.faces import analysis

    video = g.astronaut_clip(tmp_path / "astro.mp4", seconds=10, size=256)
    info = probe(video, MediaConfig())
    cfg = media(face_every=2, face_threads=3)
    plan = make_plan(info, 10.0, cfg, None, {})
    segmented, cached = FaceFinder(cfg, tmp_path / "fc3").boxes(info, plan)
    first_end = segments(125, 3)[0][1]
    assert not cached and len(segments(125, 3)) > 1
    monkeypatch.setattr(analysis, "segments", lambda wanted, threads: [(0, wanted)])
    serial, _ = FaceFinder(cfg, tmp_path / "fc1").boxes(info, plan)
    assert serial.shape == segmented.shape == (250, 4)
    assert np.array_equal(serial[:, 0] < 0, segmented[:, 0] < 0)
    assert (serial[:, 0] >= 0).all()
    # segment 0 is decoded and tracked exactly as the serial pass: identical until the smoothing of the
    # first boundary (the median and the interpolation reach back two samples)
    assert np.array_equal(serial[:(first_end - 2) * 2], segmented[:(first_end - 2) * 2])
    # after a boundary the cascade searches the whole frame instead of around the last face: the same
    # face, at most one detection scale step (scale_factor 1.2 → IoU >= 1/1.2² ≈ 0.69) apart
    assert min(iou(a.astype(float), b.astype(float)) for a, b in zip(serial, segmented, strict=True)) > 0.69


@pytest.mark.parametrize("threads", [1, 4])
def test_truncated_video_is_rejected_by_its_segment_and_no_decoder_is_left(tmp_path: Path, threads: int) -> None:
    full = g.clip(tmp_path / "full.mp4", seconds=4, size="128x96", audio=False,
                  extra=("-movflags", "+faststart"))
    data = full.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    cfg = media(face_every=1, face_threads=threads)
    info = probe(tmp_path / "cut.mp4", cfg)
    plan = make_plan(info, 4.0, cfg, None, {})
    assert len(segments(plan.source_frames, threads)) > 1
    with pytest.raises(JobRejected) as caught:
        FaceFinder(cfg, tmp_path / "fc").boxes(info, plan)
    assert caught.value.code == "video_truncated" and "of its 100 frames" in str(caught.value)
    assert ffmpeg_children() == []
    assert not (tmp_path / "fc").exists() or not list((tmp_path / "fc").glob("*.npy"))


def test_a_video_changed_under_the_face_pass_is_the_appliances_trouble_not_a_cut_off_file(tmp_path: Path) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=4, size="128x96", audio=False, extra=("-movflags", "+faststart"))
    cfg = media(face_every=1, face_threads=2)
    info = probe(video, cfg)
    plan = make_plan(info, 4.0, cfg, None, {})
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # the share now serves a shorter file than the probe read
    with pytest.raises(EnvironmentFault) as caught:  # the job waits in staging/, nobody's file is blamed
        FaceFinder(cfg, tmp_path / "fc").boxes(info, plan)
    assert "changed size while the job ran" in str(caught.value)
    assert ffmpeg_children() == []


class Broken(Exception):
    pass


class FailingDetector:
    """An RGB detector that fails on its third call, while other segments are still decoding."""

    name, height = "broken", 60

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frames: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == 3:
            raise Broken("detector failed")
        return np.full((len(frames), 4), -1.0)


def test_an_error_in_one_segment_reaches_the_caller_with_its_type_and_closes_every_decoder(
        tmp_path: Path) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=12, size="160x120", audio=False)
    cfg = media(face_every=1, face_threads=4)
    info = probe(video, cfg)
    plan = make_plan(info, 12.0, cfg, None, {})
    with pytest.raises(Broken):
        FaceFinder(cfg, tmp_path / "fc", FailingDetector()).boxes(info, plan)
    assert ffmpeg_children() == []


@pytest.fixture(scope="module")
def wav2lip_config(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Random-weight generator and S3FD checkpoint files, as an operator would configure them."""
    import torch
    from test_wav2lip_model import realistic_random_weights

    from daemon.core.config import Wav2LipEngineConfig
    from daemon.worker.engines.wav2lip import s3fd

    root = tmp_path_factory.mktemp("w2l")
    torch.save({"state_dict": realistic_random_weights(seed=5)}, root / "wav2lip_gan.pth")
    torch.manual_seed(3)
    net = s3fd.S3FD()
    torch.save(net.state_dict(), root / "s3fd.pth")
    return Wav2LipEngineConfig(checkpoint=str(root / "wav2lip_gan.pth"), batch_size=4,
                               face_detector_checkpoint=str(root / "s3fd.pth"))


@pytest.mark.slow
def test_configured_s3fd_runs_the_face_pass_under_its_own_cache_key(tmp_path: Path, wav2lip_config) -> None:  # type: ignore[no-untyped-def]
    from daemon.worker.engines.wav2lip import Wav2LipEngine

    class SeenGeometry(Wav2LipEngine):
        """The real engine, noting which geometry the renderer says its boxes have."""

        geometries: list[str] = []

        def face_track(self, width: int, height: int, geometry: str = "s3fd"):  # type: ignore[no-untyped-def]
            self.geometries.append(geometry)
            return super().face_track(width, height, geometry)

    video = g.astronaut_clip(tmp_path / "astro.mp4", seconds=1, size=128)
    speech = g.tone(tmp_path / "s.wav", 1.0)
    job = tmp_path / "job"
    job.mkdir()
    cache = job / ".lipsyncd" / "facecache"
    cfg = MediaConfig()
    info = probe(video, cfg)
    plan = make_plan(info, 1.0, cfg, 25.0, {})
    lbp, _ = FaceFinder(cfg, cache).boxes(info, plan)  # the same presenter analysed by LBP before
    assert (lbp[:, 0] >= 0).all()
    engine = SeenGeometry(wav2lip_config, "cpu")
    result = render(job, speech, video, engine=engine, cfg=Config(media=cfg))
    assert engine.geometries == ["s3fd"]
    assert result.stats["face_cache_hit"] is False  # the LBP entry for this video was not served
    entries = sorted(p.stem for p in cache.glob("*.npy"))
    assert len(entries) == 2
    s3fd_key = next(k for k in entries if k.endswith("-s3fd-h128"))  # detected at the video's own 128 px
    lbp_key = next(k for k in entries if k != s3fd_key)
    assert s3fd_key.split("-")[0] == lbp_key.split("-")[0]  # same content hash, other detector
    boxes = np.load(cache / f"{s3fd_key}.npy")
    assert boxes.shape == (25, 4) and boxes.dtype == np.int32
    found = boxes[:, 0] >= 0
    assert (boxes[~found] == -1).all()
    assert ((boxes[found, 0] <= boxes[found, 2]) & (boxes[found, 2] <= 128)).all()
    assert ((boxes[found, 1] <= boxes[found, 3]) & (boxes[found, 3] <= 128)).all()
    again, cached = FaceFinder(cfg, cache).boxes(info, plan)  # and LBP still gets its own entry back
    assert cached and np.array_equal(again, lbp)


@pytest.mark.slow
def test_rendering_starts_while_the_face_pass_is_still_running(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.worker import faces as faces_module
    from daemon.worker.engines.copy import CopyEngine

    passes: list[faces_module.FacePass] = []
    start = faces_module.FaceFinder.start

    def keep(self, info, plan):  # type: ignore[no-untyped-def]
        passes.append(start(self, info, plan))
        return passes[-1]

    seen: list[tuple[int, int]] = []

    class Watching(CopyEngine):
        def render(self, chunk, features):  # type: ignore[no-untyped-def]
            seen.append((passes[0].final, passes[0].count))
            return super().render(chunk, features)

    monkeypatch.setattr(faces_module.FaceFinder, "start", keep)
    video = g.astronaut_clip(tmp_path / "astro.mp4", seconds=20, size=160)
    speech = g.tone(tmp_path / "s.wav", 20.0)
    result = render(tmp_path, speech, video, engine=Watching(),
                    cfg=Config(media=media(face_every=1, face_threads=1)))
    final, count = seen[0]
    assert count == 500 and final < count  # the first batch went through with the pass far from done
    assert result.stats["faces_missing"] == 0 and passes[0].final == count
    assert list((tmp_path / ".lipsyncd" / "facecache").glob("*.npy"))  # cached once complete
