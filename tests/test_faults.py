"""The fault-injection suite, short form: the whole appliance under `lipsyncd up` for a minute of seeded
faults (worker and intake SIGKILL, worker SIGSTOP, a full share mid-encode, chat down / hanging /
rate-limited, a burst of tickets, bad inputs among good ones), then the audit: nothing lost, nothing done
twice, nothing half-published, every stall restarted and told. The long form: `-m slow` or the runner
script (`python -m tests.faults.runner --help`, figures in RELIABILITY.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from faults.runner import RunSpec, render, run, scaled_faults


def _check(figures: dict[str, object]) -> None:
    print(render(figures))  # shown with -s, and on failure
    assert figures["failures"] == [], render(figures)
    assert figures["inputs_lost"] == 0 and figures["duplicate_results"] == 0
    assert figures["partial_under_final_names"] == 0
    assert figures["drained"] is True


@pytest.mark.slow
@pytest.mark.timeout(900)  # 60 s of faults, then the queue drains (chunked renders on 2 busy cores)
def test_short_fault_run_loses_nothing(tmp_path: Path, media_dir: Path) -> None:
    figures = run(RunSpec(seed=20261121, duration_s=60, jobs=30, burst=20, workdir=tmp_path, media=media_dir,
                          drain_s=300))
    _check(figures)
    injected = {f["kind"] for f in figures["faults"] if f["at"]}  # type: ignore[index, union-attr]
    expected = {"kill_worker", "kill_intake", "stop_worker", "chat_down", "chat_hang", "chat_ratelimit", "burst"}
    if os.geteuid() == 0:
        expected.add("disk_full")
    assert injected >= expected, f"faults not injected: {expected - injected}"
    outcomes = figures["outcomes"]
    assert outcomes["done"] > 0 and outcomes["expected_bad_failed"] > 0  # type: ignore[index]
    stalls = [f for f in figures["faults"] if f["kind"] == "stop_worker" and f["at"]]  # type: ignore[index, union-attr]
    assert all(f["recovery_s"] is not None and f["recovery_s"] < f["limit_s"] + 10 for f in stalls), stalls


LONG_S = float(os.environ.get("LIPSYNCD_FAULTS_DURATION", "600"))


@pytest.mark.slow
@pytest.mark.timeout(int(LONG_S) + 1800 + 900)  # the faults, the drain limit, the alerts and set-up
def test_long_fault_run_loses_nothing(tmp_path: Path, media_dir: Path) -> None:
    """LIPSYNCD_FAULTS_SEED and LIPSYNCD_FAULTS_DURATION (seconds) choose the run; defaults: 1, 600."""
    seed = int(os.environ.get("LIPSYNCD_FAULTS_SEED", "1"))
    duration = LONG_S
    _check(run(RunSpec(seed=seed, duration_s=duration, jobs=int(duration * 0.6), burst=500,
                       faults=scaled_faults(duration), share_mb=1024, workdir=tmp_path, media=media_dir,
                       drain_s=1800)))
