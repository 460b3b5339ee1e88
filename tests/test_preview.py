"""preview.jpg beside every result, made from the real result by a real worker (warp engine): a strip of
mouths when the face pass found the face, and the analysed frames when it found none (the job fails)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
from conftest import Roles, drop_job, entries, env_for, wait_for
from renderkit import config, render

from daemon.core.config import MediaConfig
from daemon.worker import preview
from daemon.worker.faces.cache import content_hash
from daemon.worker.media import mp4index


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


def test_mouths_are_taken_at_keyframes_and_show_the_frames_they_name(tmp_path: Path) -> None:
    """Every frame its own flat grey (20 levels from its neighbours): a tile's grey says which frame it is."""
    video = tmp_path / "greys.mp4"
    g.ff("-f", "lavfi", "-i", "nullsrc=s=320x240:r=25:d=6", "-vf",
         "geq=lum='28+mod(N*20,200)':cb=128:cr=128,format=yuv420p", "-c:v", "libx264", "-preset", "veryfast",
         "-crf", "10", video)
    audio = g.tone(tmp_path / "speech.wav", 6.0)
    result = render(tmp_path, audio, video, cfg=config(chunk_frames=50, batch_frames=8, encoders=2,
                                                       encoder_threads=1, tail_pieces=2))
    frames = result.stats["frames"]
    boxes = np.tile(np.array([0, 0, 320, 240], np.int32), (frames, 1))  # a "face" filling the picture
    cache = tmp_path / "facecache"
    cache.mkdir()
    np.save(cache / f"{content_hash(video)}-25_1-320x240-e5-s256.npy", boxes)
    picks = preview._picks(boxes, frames, mp4index.keyframes(result.path))
    assert picks == [0, 50, 100, 125]  # the chunks' and the last chunk's pieces' first frames
    assert preview._picks(boxes, frames) == [18, 56, 93, 131]  # without keyframes: evenly spread
    preview.write_done(tmp_path, result.path, video, result.stats, cache, MediaConfig())
    w, h, pixels = picture(tmp_path / "preview.jpg")
    assert (w, h) == (4 * preview.TILE, preview.TILE)
    shown = g.decode_rgb(result.path, 320, 240).mean(axis=(1, 2, 3))  # each frame's grey, as decoded
    for tile, frame in enumerate(picks):
        grey = pixels[8:-8, tile * preview.TILE + 8:(tile + 1) * preview.TILE - 8].mean()
        nearest = int(np.abs(shown - grey)[max(0, frame - 3):frame + 4].argmin()) + max(0, frame - 3)
        assert nearest == frame and abs(grey - shown[frame]) < 6, (tile, frame, grey, shown[frame - 1:frame + 2])
    # frames between keyframes (no index to read): each seek decodes up to the frame it names
    spread = preview._picks(boxes, frames)
    argv = preview._mouths_argv("ffmpeg", result.path, preview.Frames.of(result.stats),
                                [(i, boxes[i]) for i in spread])
    (tmp_path / "spread").mkdir()
    preview._write(tmp_path / "spread", argv, "the result's frames")
    _, _, pixels = picture(tmp_path / "spread" / "preview.jpg")
    for tile, frame in enumerate(spread):
        grey = pixels[8:-8, tile * preview.TILE + 8:(tile + 1) * preview.TILE - 8].mean()
        assert abs(grey - shown[frame]) < 6, (tile, frame, grey, shown[frame - 1:frame + 2])


def test_preview_command_lines_are_built_with_ffmpeg_python_and_read_files_only(tmp_path: Path) -> None:
    frames = preview.Frames(frames=50, source_frames=50, fps=25.0, width=256, height=256)
    argv = preview._mouths_argv("ffmpeg", tmp_path / "r.mp4", frames,
                                [(i, np.array([60, 40, 150, 140])) for i in (5, 17, 29, 41)])
    assert argv[1:6] == ["-nostdin", "-hide_banner", "-v", "error", "-y"]
    assert argv.count("-protocol_whitelist") == 4 and argv.count("-i") == 4
    assert argv[argv.index("-ss") + 1] == "0.180"  # frame 5 at 25 fps: the first one shown from half a frame before it
    assert "-noaccurate_seek" not in argv  # no keyframes named: every seek decodes up to its frame
    keyed = preview._mouths_argv("ffmpeg", tmp_path / "r.mp4", frames,
                                 [(i, np.array([60, 40, 150, 140])) for i in (0, 25, 29, 41)], (0, 25))
    assert keyed.count("-noaccurate_seek") == 2
    assert [keyed[i + 1] for i, a in enumerate(keyed) if a == "-ss"] == ["0.010", "1.010", "1.140", "1.620"]
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.count("crop=72:72:69:76") == 4 and "hstack=inputs=4" in graph
    assert argv[-1] == "{out}" and "-vframes" in argv
    subprocess.run(["ffmpeg", "-hide_banner", "-filters"], check=True, capture_output=True)
