"""One stop request is one stop: Ctrl-C on `lipsyncd up`, or a manager's SIGTERM to the worker alone, puts
the job in progress back in staging/ (never failed/), and the next start resumes it and finishes it once.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group; `killpg` on a group leader that
the test started in its own session is exactly that. A manager's stop (systemd `KillMode=mixed`,
supervisord `stopasgroup=false`) is SIGTERM to the worker's pid only.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import Roles, drop_job, entries, env_for, rendering, wait_for

from daemon.core.config import MediaConfig
from daemon.worker.media.encoder import count_frames

CHUNK_FRAMES = MediaConfig().chunk_frames  # the role runs with the default chunk size


def _processing_job(root: Path) -> Path | None:
    jobs = [j for j in (root / "processing").glob("*") if not j.name.startswith(".")]
    return jobs[0] if jobs else None


def _rendering_mid_job(root: Path, segments: int = 1, whole: bool = False) -> Path:
    """Wait until the worker writes `segments` segments of the job; `whole`: until that many are complete.

    Encoders run side by side, so a later segment's file appears while an earlier one is still encoded:
    only a segment that probes with all its frames is a resume point.
    """
    def written(job: Path) -> int:
        files = sorted((job / "work").glob("seg_*.mp4"))
        if not whole:
            return len(files)
        return sum(1 for f in files if count_frames(MediaConfig(), f) == CHUNK_FRAMES)

    wait_for(lambda: (job := _processing_job(root)) is not None and rendering(job) and written(job) >= segments,
             90, f"the worker to write {'whole ' if whole else ''}segment {segments}")
    job = _processing_job(root)
    assert job is not None
    return job


def _ffmpeg_of(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "ffmpeg" in p.name()]
    except psutil.NoSuchProcess:
        return []


def _done_once_and_resumed(root: Path) -> dict[str, object]:
    wait_for(lambda: len(entries(root / "done")) == 1, 180, "the job to reach done/ after the restart")
    assert entries(root / "failed") == [], (root / "failed").iterdir()
    assert entries(root / "staging") == [] and entries(root / "processing") == []
    [job] = entries(root / "done")
    folder = root / "done" / job
    assert [p.name for p in folder.iterdir() if p.suffix == ".mp4"] == ["talk.mp4"]
    report = json.loads((folder / "report.json").read_text())
    stats = report.get("stats") or report
    assert (stats.get("resumed_from") or 0) > 0, report  # the second attempt began after chunk 1
    return report


def _up_pid_of(root: Path, child: str) -> int | None:
    try:
        data = json.loads((root / ".lipsyncd" / "control" / "up.json").read_text())
    except (OSError, ValueError):
        return None
    entry = data["children"].get(child, {})
    return entry.get("pid") if entry.get("state") == "running" else None


@pytest.mark.slow  # two real `up` runs around a 40 s job
def test_one_ctrl_c_on_up_puts_the_job_back_and_the_next_up_resumes_it(root: Path, media_dir: Path,
                                                                       roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_WORKER_GPUS="0", LIPSYNCD_WATCHDOG_GPU_CHECK="false",
                  LIPSYNCD_WATCHDOG_DISK_FREE_MIN_GB="0")
    up = roles.start("up", env=env)
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    _rendering_mid_job(root)
    worker = _up_pid_of(root, "worker-gpu0")
    assert worker is not None and _ffmpeg_of(worker), "the worker should be running ffmpeg right now"
    os.killpg(up.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    assert up.wait(120) == 0, roles.log_of(up)
    log = roles.log_of(up)
    assert "again: stopping now" not in log, log  # the worker saw one stop, not two
    assert len(entries(root / "staging")) == 1 and entries(root / "failed") == [], log
    again = roles.start("up", env=env)
    _done_once_and_resumed(root)
    os.killpg(again.pid, signal.SIGINT)
    assert again.wait(120) == 0


@pytest.mark.slow  # a real worker and a 40 s job
def test_sigterm_to_the_worker_alone_requeues_and_a_restart_resumes(root: Path, media_dir: Path,
                                                                    roles: Roles) -> None:
    env = env_for(root)
    intake = roles.start("intake", env=env)
    worker = roles.start("worker", "--gpu", "0", env=env)
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    _rendering_mid_job(root)
    children = _ffmpeg_of(worker.pid)
    assert children
    # the worker's ffmpeg children sit in their own process group: a signal to the worker's group
    # (supervisord's stopasgroup, `kill -TERM -PGID`) does not reach them
    assert all(os.getpgid(c.pid) != os.getpgid(worker.pid) for c in children)
    worker.send_signal(signal.SIGTERM)  # systemd KillMode=mixed / supervisord stopasgroup=false
    assert worker.wait(120) == 0, roles.log_of(worker)
    assert len(entries(root / "staging")) == 1 and entries(root / "failed") == [], roles.log_of(worker)
    assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)
    roles.start("worker", "--gpu", "0", env=env)
    _done_once_and_resumed(root)
    intake.terminate()
    assert intake.wait(60) == 0


@pytest.mark.slow  # a real worker and a 40 s job
def test_sigkill_of_the_worker_ends_its_ffmpeg_children_by_their_pipes(root: Path, media_dir: Path,
                                                                       roles: Roles) -> None:
    env = env_for(root)
    roles.start("intake", env=env)
    worker = roles.start("worker", "--gpu", "0", env=env)
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    _rendering_mid_job(root, whole=True)  # no clean stop: only whole segments count, so one must be
    children = _ffmpeg_of(worker.pid)
    assert children
    worker.kill()
    worker.wait(30)
    gone, alive = psutil.wait_procs(children, timeout=60)
    assert alive == [], f"ffmpeg children outlived a SIGKILLed worker: {alive}"
    roles.start("worker", "--gpu", "0", env=env)
    _done_once_and_resumed(root)


def test_children_start_in_their_own_process_group(tmp_path: Path) -> None:
    from daemon.worker.media import process

    with process.Child(["sleep", "30"], name="sleep") as child:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        child.kill()


@pytest.mark.slow  # a real worker and a 40 s job
def test_children_killed_while_the_worker_stops_are_an_interruption_not_bad_input(
        root: Path, media_dir: Path, roles: Roles) -> None:
    # the old KillMode=control-group / stopasgroup=true: the stop signal reaches ffmpeg too, and it dies
    env = env_for(root)
    roles.start("intake", env=env)
    worker = roles.start("worker", "--gpu", "0", env=env)
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    _rendering_mid_job(root)
    children = _ffmpeg_of(worker.pid)
    assert children
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: "finishing the current unit of work" in roles.log_of(worker), 30, "the worker to see the stop")
    for child in children:
        child.kill()
    worker.wait(120)
    log = roles.log_of(worker)
    assert entries(root / "failed") == [], log  # never the producer's fault
    assert len(entries(root / "staging")) == 1, log
    roles.start("worker", "--gpu", "0", env=env)
    wait_for(lambda: len(entries(root / "done")) == 1, 180, "the job to finish after the restart")
    assert entries(root / "failed") == []


@pytest.mark.slow  # a real worker and a 40 s job
def test_a_worker_paused_and_continued_mid_render_finishes_the_job(root: Path, media_dir: Path,
                                                                   roles: Roles) -> None:
    """SIGSTOP and SIGCONT (an operator's `kill -STOP`, a debugger or profiler attaching) cut the worker's
    blocking pipe writes short; every frame must still reach its encoder, and the job must end in done/."""
    env = env_for(root)
    roles.start("intake", env=env)
    worker = roles.start("worker", "--gpu", "0", env=env)
    drop_job(root, "talk", media_dir / "talk.wav", media_dir / "talk.mp4")
    _rendering_mid_job(root)
    pauses = 0
    while _processing_job(root) is not None and pauses < 400:
        worker.send_signal(signal.SIGSTOP)
        time.sleep(0.005)
        worker.send_signal(signal.SIGCONT)
        time.sleep(0.02)
        pauses += 1
    assert pauses > 20  # the render was paused many times, not finished before the first
    wait_for(lambda: entries(root / "done") or entries(root / "failed"), 180, "the job to end")
    assert entries(root / "failed") == [], [p.read_text() for p in (root / "failed").glob("*/error.txt")]
    assert len(entries(root / "done")) == 1
    [job] = entries(root / "done")
    report = json.loads((root / "done" / job / "report.json").read_text())
    assert report["attempts"] == 1 and not (report.get("stats") or {}).get("resumed_from"), report
