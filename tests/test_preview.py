"""preview.jpg beside every result, made from the real result by a real worker (warp engine): a strip of
mouths when the face pass found the face, and the analysed frames when it found none (the job fails)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
from conftest import Roles, drop_job, entries, env_for, wait_for

from daemon.core.config import MediaConfig
from daemon.worker import preview


def picture(path: Path) -> tuple[int, int, np.ndarray]:
    """(width, height, RGB pixels) of a JPEG, decoded by ffmpeg."""
    info = g.ffprobe(path)
    s = g.stream(info, "video")
    w, h = int(s["width"]), int(s["height"])
    return w, h, g.decode_rgb(path, w, h)[0]


@pytest.mark.slow
def test_a_finished_job_has_a_strip_of_mouths_and_a_faceless_one_fails_showing_its_frames(
        root: Path, tmp_path: Path, roles: Roles) -> None:
    presenter = g.astronaut_clip(tmp_path / "presenter.mp4", seconds=2, size=256)
    pattern = g.clip(tmp_path / "pattern.mp4", seconds=2, size="160x120", audio=False)  # no face anywhere
    voice = g.speech(tmp_path / "voice.wav", "Hello there, this is a test.")
    env = env_for(root, LIPSYNCD_WORKER_ENGINE="warp")
    worker = roles.intake_and_worker(root, env)
    drop_job(root, "talk", voice, presenter)
    drop_job(root, "pattern", voice, pattern)
    wait_for(lambda: len(entries(root / "done")) + len(entries(root / "failed")) == 2, 240, "both outcomes")
    assert len(entries(root / "done")) == 1, roles.log_of(worker)
    done = root / "done" / entries(root / "done")[0]
    w, h, pixels = picture(done / "preview.jpg")
    assert (w, h) == (4 * preview.TILE, preview.TILE)  # four mouth crops side by side
    assert pixels.std() > 10  # a picture, not a blank
    assert not list(done.glob(".preview*"))  # written under a temporary name, renamed

    failed = root / "failed" / entries(root / "failed")[0]
    assert failed.name.startswith("pattern")
    error = (failed / "error.txt").read_text()
    assert "No face was found in" in error and "preview.jpg" in error
    w, h, pixels = picture(failed / "preview.jpg")
    assert (w, h) == (4 * 320, preview.TILE * 3 // 2)  # 4 analysed frames, 160x120 scaled to 320x240
    assert not list(failed.glob(".*.part.*"))  # the unchanged output was discarded, not left behind


def test_the_first_frame_with_its_face_box_when_too_few_frames_have_a_face(tmp_path: Path) -> None:
    result = g.astronaut_clip(tmp_path / "result.mp4", seconds=1, size=256)
    boxes = np.full((25, 4), -1, np.int32)
    boxes[0] = (60, 40, 150, 140)
    cache = tmp_path / "facecache"
    cache.mkdir()
    from daemon.worker.faces.cache import content_hash

    np.save(cache / f"{content_hash(result)}-25_1-256x256-e5-s256.npy", boxes)
    stats = {"frames": 25, "source_frames": 25, "fps": 25.0, "width": 256, "height": 256}
    preview.write_done(tmp_path, result, result, stats, cache, MediaConfig())
    w, h, pixels = picture(tmp_path / "preview.jpg")
    assert (w, h) == (preview.WIDE, preview.WIDE)
    scale = preview.WIDE / 256
    edge = pixels[int(40 * scale) + 2, int(80 * scale):int(130 * scale)]  # the box's top edge, in lime
    assert edge[:, 1].mean() > 180 and edge[:, 0].mean() < 120 and edge[:, 2].mean() < 120


def test_preview_command_lines_are_built_with_ffmpeg_python_and_read_files_only(tmp_path: Path) -> None:
    frames = preview.Frames(frames=50, source_frames=50, fps=25.0, width=256, height=256)
    argv = preview._mouths_argv("ffmpeg", tmp_path / "r.mp4", frames,
                                [(i, np.array([60, 40, 150, 140])) for i in (5, 17, 29, 41)])
    assert argv[1:6] == ["-nostdin", "-hide_banner", "-v", "error", "-y"]
    assert argv.count("-protocol_whitelist") == 4 and argv.count("-i") == 4
    assert argv[argv.index("-ss") + 1] == "0.210"  # frame 5 at 25 fps, a quarter frame in
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.count("crop=72:72:69:76") == 4 and "hstack=inputs=4" in graph
    assert argv[-1] == "{out}" and "-vframes" in argv
    subprocess.run(["ffmpeg", "-hide_banner", "-filters"], check=True, capture_output=True)
