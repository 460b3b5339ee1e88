"""Verdict rules, incident bookkeeping and the token bucket: pure functions with the time passed in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from daemon.core import progress
from daemon.core.heartbeat import Heartbeat
from daemon.sentinel.alerts.bucket import TokenBucket
from daemon.sentinel.incidents import Change, IncidentBook
from daemon.sentinel.managers.supervision import ProgramState, ProgramView, expand, worker_from
from daemon.sentinel.verdict import Health, Limits, judge

LIMITS = Limits(loading=600, idle=120, chunk=300, finalizing=200, stopping=100)
NOW = 1_000_000.0


def beat(phase: str, progress_ago: float, written_ago: float | None = None, pid: int = 10) -> Heartbeat:
    return Heartbeat("h1", "gpu0", pid, 1.0, phase, job="J1" if phase == "working" else None,
                     progress_at=NOW - progress_ago,
                     written_at=NOW - (progress_ago if written_ago is None else written_ago))


def running(pid: int = 10, started_ago: float = 5000) -> ProgramView:
    return ProgramView("w", ProgramState.RUNNING, pid, NOW - started_ago)


@pytest.mark.parametrize(("phase", "ago", "health"), [
    ("working", 299, Health.HEALTHY), ("working", 301, Health.STALLED),
    ("loading", 599, Health.HEALTHY), ("loading", 601, Health.STALLED),
    ("idle", 119, Health.HEALTHY), ("idle", 121, Health.STALLED),
    ("finalizing", 201, Health.STALLED), ("stopping", 101, Health.STALLED)])
def test_each_phase_has_its_own_limit(phase: str, ago: float, health: Health) -> None:
    verdict = judge(beat(phase, ago), None, running(), LIMITS, NOW)
    assert verdict.health is health
    assert verdict.limit_s == LIMITS.for_phase(phase)


def test_heartbeat_rewrites_without_progress_do_not_hide_a_stalled_chunk() -> None:
    assert judge(beat("working", 400, written_ago=1), None, running(), LIMITS, NOW).health is Health.STALLED


def test_recent_job_log_lines_count_as_progress() -> None:
    assert judge(beat("working", 400), NOW - 10, running(), LIMITS, NOW).health is Health.HEALTHY


def test_stall_names_phase_job_and_quiet_time() -> None:
    v = judge(beat("working", 400), None, None, LIMITS, NOW)
    assert (v.health, v.reason, v.job, round(v.quiet_s)) == (Health.STALLED, "working_stalled", "J1", 400)


def test_supervisord_fatal_means_gave_up_whatever_the_heartbeat() -> None:
    fatal = ProgramView("w", ProgramState.FATAL, None, None, gave_up=True, detail="Exited too quickly")
    v = judge(beat("working", 1), None, fatal, LIMITS, NOW)
    assert (v.health, v.reason) == (Health.GAVE_UP, "Exited too quickly")


@pytest.mark.parametrize("state", [ProgramState.BACKOFF, ProgramState.STOPPED, ProgramState.EXITED])
def test_manager_restarting_it_is_down_not_stalled(state: ProgramState) -> None:
    assert judge(beat("working", 5000), None, ProgramView("w", state), LIMITS, NOW).health is Health.DOWN


def test_new_process_without_heartbeat_gets_the_loading_limit() -> None:
    old = beat("working", 5000, pid=10)
    assert judge(old, None, running(pid=11, started_ago=30), LIMITS, NOW).health is Health.STARTING
    v = judge(old, None, running(pid=11, started_ago=700), LIMITS, NOW)
    assert (v.health, v.reason) == (Health.STALLED, "no_heartbeat_after_start")


def test_after_a_requested_restart_the_old_heartbeat_is_not_judged() -> None:
    old = beat("working", 5000)
    assert judge(old, None, None, LIMITS, NOW, restart_at=NOW - 10).health is Health.STARTING
    assert judge(old, None, None, LIMITS, NOW, restart_at=NOW - 601).health is Health.STALLED
    fresh = replace(beat("loading", 1), pid=12)
    assert judge(fresh, None, None, LIMITS, NOW, restart_at=NOW - 10).health is Health.HEALTHY


def test_nothing_to_judge_is_unknown() -> None:
    assert judge(None, None, None, LIMITS, NOW).health is Health.UNKNOWN


def test_incident_opens_once_reminds_and_resolves_once() -> None:
    book = IncidentBook(renotify_s=3600)
    seen = [book.update("disk", True, t) for t in (0, 5, 10, 3599, 3600, 3700)]
    assert seen == [Change.OPENED, None, None, None, Change.REMINDER, None]
    assert book.update("disk", False, 3800) is Change.RESOLVED
    assert book.update("disk", False, 3900) is None


def test_token_bucket_never_exceeds_capacity_plus_rate_in_a_minute() -> None:
    bucket = TokenBucket(per_minute=15, capacity=3, now=0)
    taken = [t / 10 for t in range(0, 6000) if bucket.take(t / 10)]  # try ten times a second for 10 min
    worst = max(sum(1 for u in taken if s <= u < s + 60) for s in taken)
    assert worst <= 18 and len(taken) >= 140


def test_manager_names_map_to_workers_and_back() -> None:
    assert expand("lipsyncd-worker:lipsyncd-worker-{n}", "gpu3") == "lipsyncd-worker:lipsyncd-worker-3"
    assert worker_from("lipsyncd-worker:lipsyncd-worker-{n}", "lipsyncd-worker:lipsyncd-worker-3") == "gpu3"
    assert worker_from("lipsyncd-worker@{n}.service", "lipsyncd-intake.service") is None


def test_a_worker_restarted_mid_job_has_its_start_up_grace_until_it_renders() -> None:
    restart_at = NOW - 400  # we restarted it; its new process resumed the job and is still preparing
    resumed = replace(beat("working", 350, 1), pid=11, written_at=NOW - 1, progress=progress.Progress("prepare"))
    verdict = judge(resumed, None, running(11, 399), LIMITS, NOW, restart_at)
    assert verdict.health is Health.HEALTHY and verdict.grace, "judged by the chunk limit while resuming"
    late = judge(resumed, None, running(11, 399), LIMITS, NOW + 600, restart_at)  # past loading + chunk
    assert late.health is Health.STALLED and late.quiet_s == pytest.approx(400)
    # its first batch is done: the chunk limit applies again
    rendering = replace(resumed, progress=progress.Progress("render"))
    verdict = judge(rendering, None, running(11, 399), LIMITS, NOW, restart_at)
    assert verdict.health is Health.STALLED and not verdict.grace
    not_ours = judge(resumed, None, running(11, 399), LIMITS, NOW)  # a start we did not order: no grace
    assert not_ours.health is Health.STALLED


def test_a_quiet_worker_still_using_cpu_is_slow_not_stalled_up_to_three_limits() -> None:
    quiet = beat("working", 400)
    assert judge(quiet, None, running(), LIMITS, NOW, cpu_share=0.0).health is Health.STALLED  # stopped
    assert judge(quiet, None, running(), LIMITS, NOW, cpu_share=None).health is Health.STALLED  # no evidence
    busy = judge(quiet, None, running(), LIMITS, NOW, cpu_share=0.15)  # a fair share of an overloaded box
    assert (busy.health, busy.reason) == (Health.HEALTHY, "working_busy")
    looping = judge(beat("working", 901), None, running(), LIMITS, NOW, cpu_share=1.0)
    assert looping.health is Health.STALLED, "a worker that burns CPU without progress forever is a stall"
    assert judge(beat("loading", 601), None, running(), LIMITS, NOW, cpu_share=1.0).health is Health.STALLED


def test_cpu_meter_reports_the_recent_share_of_a_cpu_only() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    from daemon.sentinel.cpu import CpuMeter, tree_cpu_s

    me = os.getpid()
    meter = CpuMeter()
    t0 = time.monotonic()
    assert meter.recent_share("k", me, 0.0, t0, window=0.3) is None  # no sample that old yet
    t = time.process_time()
    while time.process_time() - t < 0.4:  # burn 0.4 s of CPU in this process
        pass
    share = meter.recent_share("k", me, 0.0, time.monotonic(), window=0.3)
    assert share is not None and share > 0.05  # well above BUSY_MIN_SHARE, even on a loaded box
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(1.0)  # past its start-up
        meter.recent_share("s", sleeper.pid, 0.0, time.monotonic(), window=0.3)
        time.sleep(0.4)
        idle = meter.recent_share("s", sleeper.pid, 0.0, time.monotonic(), window=0.3)
        assert idle is not None and idle < 0.02  # a sleeping process: below BUSY_MIN_SHARE
    finally:
        sleeper.kill()
        sleeper.wait()
    assert tree_cpu_s(me, 12345.0) is None  # another process's start time: not ours
    stopped = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.kill(stopped.pid, signal.SIGSTOP)
        wait = time.monotonic() + 10
        while psutil.Process(stopped.pid).status() != psutil.STATUS_STOPPED and time.monotonic() < wait:
            time.sleep(0.05)
        assert tree_cpu_s(stopped.pid, 0.0) is None, "a SIGSTOPped worker must never look busy"
    finally:
        stopped.kill()
        stopped.wait()
