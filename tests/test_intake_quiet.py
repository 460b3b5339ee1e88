"""Quiet while waiting: a real intake process with drops pending uses under 2 % of one core and scans at
its configured interval. Measured as the process's own CPU time (user + system), not wall time, so it
holds on a loaded machine; the file-event hint is on, as in production."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psutil
from conftest import Roles, env_for, wait_for

from daemon.intake.wakeup import Hint

WINDOW_S = 12.0
INTERVAL_S = 2.0


def _pending_drops(inbox: Path) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "empty.wav").write_bytes(b"")  # a copy that has not started writing
    (inbox / "empty.mp4").write_bytes(b"")
    (inbox / "empty.toml").write_text('audio = "empty.wav"\nvideo = "empty.mp4"\n')
    (inbox / "ghost.toml").write_text('audio = "ghost.wav"\nvideo = "ghost.mp4"\n')  # media never came
    for i in range(300):  # unrelated files nobody named (yet)
        (inbox / f"notes-{i:03d}.txt").write_text("x" * 100)


def test_intake_with_drops_pending_uses_under_two_percent_of_a_core(root: Path, roles: Roles) -> None:
    _pending_drops(root / "inbox")
    env = env_for(root, LIPSYNCD_INTAKE_LOCAL_EVENTS="true", LIPSYNCD_INTAKE_SCAN_INTERVAL_S=str(INTERVAL_S),
                  LIPSYNCD_INTAKE_SETTLE_S="5")
    intake = roles.start("intake", env=env)
    status = root / ".lipsyncd" / "roles" / "intake.json"

    def waiting() -> list[str]:
        try:
            return sorted(w["drop"] for w in json.loads(status.read_text())["waiting"])
        except (OSError, ValueError, KeyError):
            return []

    wait_for(lambda: waiting() == ["empty.toml", "ghost.toml"], 60, "intake to list both waiting drops")
    proc = psutil.Process(intake.pid)
    time.sleep(2 * INTERVAL_S)  # past start-up (imports, the first status page)
    before = proc.cpu_times()
    scans: set[float] = set()
    started = time.monotonic()
    while time.monotonic() - started < WINDOW_S:
        try:
            scans.add(json.loads(status.read_text())["written_at"])
        except (OSError, ValueError):
            pass  # replaced while we read it
        time.sleep(0.2)
    after = proc.cpu_times()
    elapsed = time.monotonic() - started
    used = (after.user - before.user) + (after.system - before.system)
    share = used / elapsed
    print(f"intake CPU with drops pending: {used:.3f} s over {elapsed:.1f} s = {100 * share:.2f} % of a core; "
          f"{len(scans)} scans (interval {INTERVAL_S} s)")
    assert intake.poll() is None, roles.log_of(intake)
    assert share < 0.02, f"intake used {100 * share:.1f} % of a core while only waiting"
    assert 3 <= len(scans) <= elapsed / INTERVAL_S * 2 + 2, f"{len(scans)} scans in {elapsed:.0f} s"


def test_only_arrival_events_wake_the_scan_and_a_storm_is_rate_limited() -> None:
    wake = threading.Event()
    now = [100.0]
    hint = Hint(wake, gap=1.0, clock=lambda: now[0])
    for kind in ("opened", "closed_no_write"):  # our own reads
        hint.poke(kind)
    assert not wake.is_set() and hint.pokes == 0
    hint.poke("created")
    assert wake.is_set()
    wake.clear()
    for _ in range(1000):  # a copy writing fast: one deferred wake, not a thousand
        hint.poke("modified")
    assert not wake.is_set()
    assert wake.wait(5), "the deferred wake never came"
    hint.cancel()
