"""The worker's per-job boundary in-process: one fake renderer per outcome, real folders and real ffmpeg.

The renderer is the seam (behind it sit the engines and the GPU); everything around it is the
production code: claim, lease, progress news, publish, report.json / error.txt and the moves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import entries, ffmpeg, stage_job

from daemon.core import heartbeat, lease, progress, state
from daemon.core.config import load_config
from daemon.core.errors import EnvironmentFault, JobRejected
from daemon.core.job import Job
from daemon.core.lifecycle import Stopper
from daemon.core.progress import Progress
from daemon.core.share import Share
from daemon.core.state import JobState
from daemon.worker.render import Interrupted, ProgressFn, RenderRequest, StopFn
from daemon.worker.role import Worker

Behaviour = Callable[[RenderRequest, ProgressFn, StopFn], dict[str, Any]]
STATS = {"frames": 25, "source_frames": 25, "fps": 25.0, "width": 64, "height": 48}


@dataclass
class FakeRenderers:
    """The worker's `renderer_for`: every engine name gets this renderer, which acts per job id."""

    behaviours: dict[str, Behaviour]
    requests: list[RenderRequest] = field(default_factory=list)

    def __call__(self, engine: str) -> FakeRenderers:
        return self

    def render(self, request: RenderRequest, progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        self.requests.append(request)
        return self.behaviours[request.job_id](request, progress, should_stop)


@dataclass
class Bench:
    root: Path
    worker: Worker
    stop: Stopper
    renderers: FakeRenderers
    inputs: dict[str, dict[str, str]]  # job id → digest of each producer file

    def folder(self, state_name: str, job_id: str = "j1") -> Path:
        [name] = [n for n in entries(self.root / state_name) if n.split("@", 1)[0] == job_id]
        return self.root / state_name / name

    def assert_inputs_untouched(self, folder: Path) -> None:
        assert _digests(folder / "inputs") == self.inputs[folder.name.split("@", 1)[0]]

    def log_of(self, folder: Path) -> str:
        return (folder / "job.log").read_text()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _bench(root: Path, media_dir: Path, behaviours: dict[str, Behaviour]) -> Bench:
    inputs = {}
    for job_id in behaviours:  # staged in this order: the queue claims the oldest first
        folder = stage_job(root, job_id)
        shutil.copy(media_dir / "a.wav", folder / "inputs" / "a.wav")
        shutil.copy(media_dir / "v.mp4", folder / "inputs" / "v.mp4")
        (folder / "attempt.json").write_text(json.dumps({"attempt": 1}))  # as intake's acceptance writes it
        inputs[job_id] = _digests(folder / "inputs")
    config = load_config(root=str(root), env={"LIPSYNCD_WORKER_ENGINE": "copy", "LIPSYNCD_WORKER_LEASE_S": "30"})
    stop = Stopper()  # not installed: the test plays the signal by setting it, as the handler does
    renderers = FakeRenderers(behaviours)
    worker = Worker(config, Share(root), renderers, lease.this_process("gpu0"), stop)
    worker.start()
    return Bench(root, worker, stop, renderers, inputs)


def _mux(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
    """A renderer that works: reports its chunk and writes a real MP4 (the video with the job's audio)."""
    progress_fn(Progress("probe"))
    progress_fn(Progress("render", chunk=1, chunks=1, frames_done=25, frames_total=25, fps=50.0, eta_s=0.0))
    ffmpeg("-i", str(request.video), "-i", str(request.audio), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "aac", "-f", "mp4", str(request.output))
    return dict(STATS)


def _reject(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
    progress_fn(Progress("probe"))
    raise JobRejected("media_invalid", name=request.video.name, detail="the video has no frames")


def test_a_rendered_job_is_published_in_done_with_its_report_and_news_on_the_way(root: Path,
                                                                                 media_dir: Path) -> None:
    seen: dict[str, Any] = {}

    def render(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        stats = _mux(request, progress_fn, should_stop)
        seen["progress"] = progress.read(request.output.parent)
        seen["beats"] = heartbeat.read_all(root / ".lipsyncd")
        return stats

    bench = _bench(root, media_dir, {"j1": render})
    assert bench.worker.step() is True
    folder = bench.folder("done")
    report = json.loads((folder / "report.json").read_text())
    assert (report["state"], report["attempts"], report["output"]) == ("done", 1, "j1.mp4")
    assert report["stats"]["frames"] == 25 and report["stats"]["duration_s"] > 0  # publish probed it
    assert {"accepted_at", "claimed_at", "render_s", "finished_at"} <= set(report["timings"])
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".mp4") == ["j1.mp4"]
    assert not (folder / "work").exists() and not (folder / "progress.json").exists()
    bench.assert_inputs_untouched(folder)
    assert "done in" in bench.log_of(folder)
    # the renderer's one Progress value reached progress.json and the heartbeat unchanged
    news = seen["progress"]
    assert (news["phase"], news["chunk"], news["chunks"], news["percent"], news["fps"]) == ("render", 1, 1, 100.0, 50.0)
    [beat] = seen["beats"]
    assert (beat.phase, beat.job) == ("working", "j1")
    assert beat.progress == Progress("render", chunk=1, chunks=1, frames_done=25, frames_total=25, fps=50.0, eta_s=0.0)
    assert bench.worker.step() is False  # nothing left: idle
    [idle] = heartbeat.read_all(root / ".lipsyncd")
    assert (idle.phase, idle.progress) == ("idle", progress.NO_PROGRESS)


def test_bad_input_lands_in_failed_with_a_plain_error_and_the_worker_takes_the_next_job(root: Path,
                                                                                        media_dir: Path) -> None:
    bench = _bench(root, media_dir, {"j1": _reject, "j2": _mux})
    assert bench.worker.step() is True
    folder = bench.folder("failed")
    error = (folder / "error.txt").read_text()
    assert "The file v.mp4 cannot be used: the video has no frames." in error
    assert "Re-export the file" in error
    report = json.loads((folder / "report.json").read_text())
    assert (report["state"], report["code"], report["attempts"]) == ("failed", "media_invalid", 1)
    assert "traceback" not in report  # the producer's input, not our bug
    bench.assert_inputs_untouched(folder)
    assert "failed: The file v.mp4 cannot be used" in bench.log_of(folder)
    assert bench.worker.step() is True
    assert entries(root / "done") == ["j2"] and entries(root / "failed") == ["j1"]


def test_an_environment_fault_puts_the_job_back_in_staging_and_stops_the_worker(root: Path,
                                                                                 media_dir: Path) -> None:
    def gpu_gone(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        progress_fn(Progress("prepare", chunk=0, chunks=2, frames_total=25))
        raise EnvironmentFault("CUDA error: the GPU fell off the bus")

    bench = _bench(root, media_dir, {"j1": gpu_gone})
    with pytest.raises(EnvironmentFault, match="fell off the bus"):  # run() ends: exit 70, the manager restarts
        bench.worker.step()
    folder = bench.folder("staging")
    assert folder.name == "j1", "back under its plain name, claimable by any worker"
    assert json.loads((folder / "attempt.json").read_text())["attempt"] == 1, "the machine's fault: no attempt used"
    assert not (folder / "error.txt").exists() and not (folder / "report.json").exists()
    assert entries(root / "failed") == [] and entries(root / "processing") == []
    bench.assert_inputs_untouched(folder)
    assert "environment fault: CUDA error: the GPU fell off the bus" in bench.log_of(folder)


def test_a_bug_fails_the_job_with_its_traceback_and_is_raised(root: Path, media_dir: Path) -> None:
    def broken(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        return {"frames": 1 // 0}

    bench = _bench(root, media_dir, {"j1": broken})
    with pytest.raises(ZeroDivisionError):  # a bug is never swallowed: run() ends non-zero
        bench.worker.step()
    folder = bench.folder("failed")
    report = json.loads((folder / "report.json").read_text())
    assert (report["code"], report["params"]["detail"]) == ("internal_error", "ZeroDivisionError: integer division "
                                                                              "or modulo by zero")
    assert "in broken" in report["traceback"] and "1 // 0" in report["traceback"]
    error = (folder / "error.txt").read_text()
    assert "internal error" in error and "This is not your fault" in error
    bench.assert_inputs_untouched(folder)


def test_a_stop_between_chunks_requeues_the_job_with_its_finished_chunks_kept(root: Path, media_dir: Path) -> None:
    def chunked(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        for chunk in range(3):  # the pipeline's contract: look at should_stop() between chunks
            if should_stop():
                raise Interrupted(f"stopped before chunk {chunk + 1}")
            (request.workdir / f"seg_{chunk:05d}.mp4").write_bytes(b"a finished segment")
            progress_fn(Progress("render", chunk=chunk + 1, chunks=3, frames_done=8 * (chunk + 1), frames_total=25))
            if chunk == 0:
                bench.stop.set()  # the first SIGTERM arrives while chunk 1 is encoded
        return dict(STATS)

    bench = _bench(root, media_dir, {"j1": chunked})
    assert bench.worker.step() is True  # no exception: run_until_stopped sees the stop and exits 0
    folder = bench.folder("staging")
    assert folder.name == "j1"
    assert sorted(p.name for p in (folder / "work").iterdir()) == ["seg_00000.mp4"], "resume state kept"
    assert json.loads((folder / "attempt.json").read_text())["attempt"] == 1
    assert entries(root / "failed") == [] and entries(root / "done") == []
    assert "stop requested: put back in the queue" in bench.log_of(folder)
    bench.assert_inputs_untouched(folder)


def test_bad_input_seen_after_a_stop_request_is_put_back_not_blamed_on_the_producer(root: Path,
                                                                                      media_dir: Path) -> None:
    def child_killed(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        bench.stop.set()  # the signal reached an ffmpeg child too: its output ended early
        return _reject(request, progress_fn, should_stop)

    bench = _bench(root, media_dir, {"j1": child_killed})
    assert bench.worker.step() is True
    folder = bench.folder("staging")
    assert not (folder / "error.txt").exists() and entries(root / "failed") == []
    assert "stop requested while it read as bad input" in bench.log_of(folder)
    bench.assert_inputs_untouched(folder)


def test_a_job_taken_over_mid_render_is_left_to_its_new_owner(root: Path, media_dir: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    other = lease.Identity(host="otherhost", pid=4242, pid_start=1.0, boot_id="b", worker="gpu1")

    def taken_over(request: RenderRequest, progress_fn: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        _mux(request, progress_fn, should_stop)  # our result is written, not yet published
        ours = request.output.parent
        theirs = state.move(Job(root, JobState.PROCESSING, ours), JobState.PROCESSING, "lease expired: taken over",
                            owner=other.owner_token())
        lease.write(theirs.path, other, 2)
        progress_fn(Progress("render", chunk=2, chunks=2))  # renewing our lease finds it gone
        return dict(STATS)

    bench = _bench(root, media_dir, {"j1": taken_over})
    with caplog.at_level(logging.WARNING, logger="daemon.worker.role"):
        assert bench.worker.step() is True
    folder = bench.folder("processing")
    held = lease.read(folder)
    assert held is not None and held["host"] == "otherhost"
    assert not (folder / "j1.mp4").exists(), "our output is never published into their claim"
    assert [p.name for p in folder.glob(".*.part.*")] == [".j1.a1.part.mp4"]  # theirs to clean up when done
    assert not (folder / "report.json").exists() and not (folder / "error.txt").exists()
    bench.assert_inputs_untouched(folder)
    assert entries(root / "done") == [] and entries(root / "failed") == [] and entries(root / "staging") == []
    assert "discarding our output" in caplog.text
