"""Resume: an attempt stopped or killed mid-job continues from the last finished chunk, same result."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mediagen as g
import numpy as np
import psutil
import pytest
from renderkit import assert_in_sync, audio_seconds, config, render

from daemon.worker.render import Interrupted

CHUNK = 10


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return g.tone(tmp_path / "speech.wav", 2.3), g.clip(tmp_path / "v.mp4", seconds=1.2, size="96x64")


def reference(tmp_path: Path, audio: Path, video: Path) -> tuple[int, np.ndarray]:
    clean = tmp_path / "clean"
    clean.mkdir()
    result = render(clean, audio, video, cfg=config(chunk_frames=CHUNK))
    return int(result.video["nb_read_packets"]), g.decode_gray(result.path, 96, 64)


def test_stop_between_chunks_then_resume_gives_the_same_result(tmp_path: Path, inputs: tuple[Path, Path],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    audio, video = inputs
    checks = iter([False, False, True])
    with pytest.raises(Interrupted):
        render(tmp_path, audio, video, cfg=config(chunk_frames=CHUNK), should_stop=lambda: next(checks))
    assert sorted(p.name for p in (tmp_path / "work").glob("seg_*.mp4")) == ["seg_00000.mp4", "seg_00001.mp4"]
    assert not (tmp_path / "result.mp4.tmp").exists()
    with caplog.at_level(logging.INFO, logger="daemon.worker.pipeline"):
        resumed = render(tmp_path, audio, video, cfg=config(chunk_frames=CHUNK))
    total = resumed.stats["frames"]
    assert resumed.stats["resumed_from"] == 2 and resumed.stats["frames_rendered"] == total - 2 * CHUNK
    assert "resuming at chunk 3 of 6" in caplog.text
    frames, pixels = reference(tmp_path, audio, video)
    assert int(resumed.video["nb_read_packets"]) == frames == total
    assert_in_sync(resumed, audio_seconds(audio), 25.0)
    again = g.decode_gray(resumed.path, 96, 64)
    assert again.shape == pixels.shape and np.abs(again.astype(int) - pixels).mean() < 1.0


def test_changed_options_start_over_instead_of_mixing_segments(tmp_path: Path,
                                                               inputs: tuple[Path, Path]) -> None:
    audio, video = inputs
    checks = iter([False, False, True])
    with pytest.raises(Interrupted):
        render(tmp_path, audio, video, cfg=config(chunk_frames=CHUNK), should_stop=lambda: next(checks))
    result = render(tmp_path, audio, video, cfg=config(chunk_frames=CHUNK), options={"loop": "wrap"})
    assert result.stats["resumed_from"] is None
    assert result.stats["frames_rendered"] == result.stats["frames"] > 2 * CHUNK


KILLED_WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from daemon.worker.engines.copy import CopyEngine
    from renderkit import config, render

    def slowly(news):  # stands in for a model: slow enough to be killed mid-job
        if news.phase == "render" and not news.fps:  # after each batch went to its encoder
            time.sleep(0.15)
            print(f"handed over {news.frames_done}", flush=True)

    tmp, audio, video = map(Path, sys.argv[1:4])
    render(tmp, audio, video, engine=CopyEngine(), cfg=config(chunk_frames=10, batch_frames=5),
           on_progress=slowly)
""")


@pytest.mark.slow
def test_sigkill_mid_job_then_restart_resumes_from_last_finished_chunk(
        tmp_path: Path, inputs: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    audio, video = inputs
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, str(tmp_path), str(audio), str(video)],
                            cwd=root, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])})
    assert proc.stdout is not None
    # chunks 1-3 handed to their encoders; chunk 4's first batch too, so its x264 child is running and
    # waits for the rest (a decoder of so small a clip may have written all of it into its socket already)
    while proc.stdout.readline() != b"handed over 35\n":
        assert proc.poll() is None, "the worker ended before chunk 4"
    children = psutil.Process(proc.pid).children(recursive=True)
    assert any("ffmpeg" in c.name() for c in children)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    # the orphaned ffmpeg children end by themselves once their pipes close
    _gone, alive = psutil.wait_procs(children, timeout=20)
    assert alive == []
    with caplog.at_level(logging.INFO, logger="daemon.worker.pipeline"):
        resumed = render(tmp_path, audio, video, cfg=config(chunk_frames=CHUNK, batch_frames=5))
    first = resumed.stats["resumed_from"]
    assert first is not None and 2 <= first <= 4
    assert f"resuming at chunk {first + 1} of 6" in caplog.text
    frames, pixels = reference(tmp_path, audio, video)
    assert int(resumed.video["nb_read_packets"]) == frames
    assert_in_sync(resumed, audio_seconds(audio), 25.0)
    again = g.decode_gray(resumed.path, 96, 64)
    assert np.abs(again.astype(int) - pixels).mean() < 1.0


def test_every_segment_starts_on_a_keyframe_and_holds_exactly_its_chunk(tmp_path: Path,
                                                                        inputs: tuple[Path, Path]) -> None:
    audio, video = inputs
    result = render(tmp_path, audio, video, cfg=config(chunk_frames=12))
    frames = int(result.video["nb_read_packets"])
    sizes = [min(12, frames - a) for a in range(0, frames, 12)]
    for i, size in enumerate(sizes):
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
                              "-of", "csv=p=0", str(tmp_path / "work" / f"seg_{i:05d}.mp4")],
                             capture_output=True, text=True, check=True).stdout.split()
        assert len(out) == size, (i, out)
        assert out[0].startswith("K"), (i, out)  # decodes on its own


def test_keyframe_interval_divides_every_chunk() -> None:
    from daemon.worker.media.encoder import gop

    assert [gop(n) for n in (25, 250, 300, 1000, 2500)] == [25, 250, 150, 250, 250]
    assert gop(997) == 997  # a prime: no divisor makes a sensible GOP, so one per chunk
    for n in range(1, 3000):
        assert n % gop(n) == 0 and (gop(n) >= 50 or gop(n) == n)
