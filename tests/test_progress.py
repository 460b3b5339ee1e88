"""One Progress value: what the renderer reports is what progress.json and the heartbeat file say."""

from __future__ import annotations

import json
from pathlib import Path

from daemon.core import heartbeat, progress
from daemon.core.progress import Progress

NEWS = Progress("render", chunk=3, chunks=8, frames_done=300, frames_total=800, fps=24.456, eta_s=204.04)


def test_heartbeat_file_keeps_its_flat_layout_with_the_step_beside_the_worker_phase(tmp_path: Path) -> None:
    beat = heartbeat.Heartbeat("h1", "gpu0", 42, 1.0, "working", job="J1", progress=NEWS,
                               progress_at=10.0, written_at=11.0, extra={"gpu": "0"})
    path = heartbeat.write(tmp_path, beat)
    data = json.loads(path.read_text())
    assert data == {"host": "h1", "worker": "gpu0", "pid": 42, "pid_start": 1.0, "phase": "working", "job": "J1",
                    "chunk": 3, "chunks": 8, "frames_done": 300, "frames_total": 800, "fps": 24.456,
                    "eta_s": 204.04, "step": "render", "progress_at": 10.0, "written_at": 11.0,
                    "extra": {"gpu": "0"}}
    assert heartbeat.read(path) == beat


def test_an_idle_heartbeat_carries_no_progress_and_reads_back_the_same(tmp_path: Path) -> None:
    beat = heartbeat.Heartbeat("h1", "gpu0", 42, 1.0, "idle", progress_at=10.0, written_at=10.0)
    path = heartbeat.write(tmp_path, beat)
    data = json.loads(path.read_text())
    assert (data["step"], data["chunk"], data["fps"], data["eta_s"]) == ("", 0, 0.0, None)
    read = heartbeat.read(path)
    assert read == beat and read is not None and read.progress == progress.NO_PROGRESS


def test_a_heartbeat_file_without_progress_keys_or_with_unknown_ones_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "workers" / "h1--gpu0.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"host": "h1", "worker": "gpu0", "pid": 1, "pid_start": 0.0, "phase": "loading",
                                "step": "probe", "future_key": 1}))
    read = heartbeat.read(path)
    assert read is not None and read.progress == Progress("probe")
    path.write_text(json.dumps({"host": "h1", "phase": "idle"}))  # no pid: not a heartbeat
    assert heartbeat.read(path) is None


def test_progress_json_rounds_the_news_for_people_and_caps_the_percentage(tmp_path: Path) -> None:
    progress.write(tmp_path, progress.record("J1", 2, NEWS, now=5.0))
    assert progress.read(tmp_path) == {"job": "J1", "attempt": 2, "phase": "render", "chunk": 3, "chunks": 8,
                                       "frames_done": 300, "frames_total": 800, "percent": 37.5, "fps": 24.46,
                                       "eta_s": 204.0, "updated_at": 5.0}
    assert Progress(frames_done=801, frames_total=800).percent == 100.0
    assert Progress("probe").percent is None  # no frame count yet: no percentage, not 0 %
