"""`lipsyncd up` end to end: a burst of tickets, crashes of its children, and a clean Ctrl-C."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import Roles, entries, env_for, wait_for


def drop_many(root: Path, media: Path, n: int, prefix: str = "j") -> dict[str, str]:
    """n tickets, each with its own media; returns every dropped file's digest by name."""
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    audio, video = (media / "short.wav").read_bytes(), (media / "v.mp4").read_bytes()
    digests = {}
    for i in range(n):
        name = f"{prefix}{i:03d}"
        for suffix, data in ((".wav", audio), (".mp4", video)):
            tmp = inbox / f"{name}{suffix}.part"
            tmp.write_bytes(data)
            tmp.rename(inbox / f"{name}{suffix}")
            digests[f"{name}{suffix}"] = hashlib.sha256(data).hexdigest()
        (inbox / f"{name}.toml").write_text(f'audio = "{name}.wav"\nvideo = "{name}.mp4"\n')
    return digests


def check_outcome(root: Path, digests: dict[str, str], n: int) -> None:
    """Every job in exactly one terminal folder, done once, inputs intact, nothing partial under a final name."""
    done = entries(root / "done")
    assert len(done) == n, f"{len(done)} done, failed: {entries(root / 'failed')}"
    assert entries(root / "failed") == [] and entries(root / "staging") == [] and entries(root / "processing") == []
    seen: dict[str, str] = {}
    for job in done:
        folder = root / "done" / job
        report = json.loads((folder / "report.json").read_text())
        results = [p for p in folder.iterdir() if p.suffix == ".mp4" and p.parent == folder]
        assert [p.name for p in results] == [report["output"]], f"{job}: {results}"
        assert results[0].stat().st_size > 1000
        for f in (folder / "inputs").iterdir():
            assert f.name not in seen, f"{f.name} in both {seen.get(f.name)} and {job}"
            seen[f.name] = job
            if f.suffix in (".wav", ".mp4"):
                assert hashlib.sha256(f.read_bytes()).hexdigest() == digests[f.name]
    assert set(digests) <= set(seen), f"lost inputs: {set(digests) - set(seen)}"
    assert entries(root / "inbox") == []


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_200_tickets_into_a_running_up_all_done_exactly_once(root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_WORKER_GPUS="0,1")
    up = roles.start("up", env=env)
    wait_for(lambda: (root / ".lipsyncd" / "control" / "up.json").exists(), 30, "up to start its children")
    digests = drop_many(root, media_dir, 200)
    wait_for(lambda: len(entries(root / "done")) + len(entries(root / "failed")) >= 200, 400,
             "200 jobs to finish", interval=1.0)
    check_outcome(root, digests, 200)
    kids = children_of(up.pid)
    assert {k.cmdline()[-1] if "intake" in k.cmdline() else "" for k in kids} >= {"intake"}
    os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    assert up.wait(timeout=60) == 0, roles.log_of(up)
    for kid in kids:
        assert not kid.is_running() or kid.status() == psutil.STATUS_ZOMBIE, f"{kid.cmdline()} left running"


@pytest.mark.slow
def test_children_killed_at_random_moments_lose_nothing(root: Path, media_dir: Path, roles: Roles) -> None:
    """SIGKILL intake and workers of a running `up` at seeded random moments; `up` restarts them."""
    rng = random.Random(20261121)
    # the kills are ours, not the jobs' fault: allow more attempts than kills so none is failed for it
    env = env_for(root, LIPSYNCD_WORKER_GPUS="0,1", LIPSYNCD_WORKER_MAX_ATTEMPTS="12")
    up = roles.start("up", env=env)
    wait_for(lambda: (root / ".lipsyncd" / "control" / "up.json").exists(), 30, "up to start its children")
    digests = drop_many(root, media_dir, 40)
    kills: dict[str, int] = {}
    deadline = time.monotonic() + 200
    # at most 3 kills per child: `up` rightly gives up on a child that dies 5 times in a row at start
    while len(entries(root / "done")) < 40 and time.monotonic() < deadline and sum(kills.values()) < 9:
        time.sleep(rng.uniform(0.3, 1.5))
        victims = {}
        for kid in psutil.Process(up.pid).children():
            try:
                name = kid.cmdline()[-1]
                if name in ("intake", "0", "1") and kills.get(name, 0) < 3 and time.time() - kid.create_time() > 1:
                    victims[name] = [kid, *kid.children(recursive=True)]
            except psutil.Error:
                continue  # exited between listing and looking
        if victims:
            name = rng.choice(sorted(victims))
            for proc in victims[name]:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            kills[name] = kills.get(name, 0) + 1
    wait_for(lambda: len(entries(root / "done")) + len(entries(root / "failed")) >= 40, 300, "all 40 jobs")
    assert sum(kills.values()) >= 6, kills
    check_outcome(root, digests, 40)
    os.killpg(up.pid, signal.SIGINT)
    assert up.wait(timeout=60) == 0


def test_up_restarts_a_child_on_request(root: Path, roles: Roles) -> None:
    env = env_for(root)
    up = roles.start("up", env=env)
    control = root / ".lipsyncd" / "control"
    wait_for(lambda: (control / "up.json").exists(), 30, "up.json")

    def child_pid(name: str) -> int | None:
        data = json.loads((control / "up.json").read_text())
        return data["children"].get(name, {}).get("pid")

    wait_for(lambda: child_pid("worker-gpu0") is not None, 30, "the worker to run")
    before = child_pid("worker-gpu0")
    assert before is not None
    os.kill(before, signal.SIGSTOP)  # a stalled worker: only SIGKILL ends it
    (control / "restart-worker-gpu0").write_text("stalled for test")
    wait_for(lambda: child_pid("worker-gpu0") not in (None, before), 30, "a new worker pid")
    assert not psutil.pid_exists(before) or psutil.Process(before).status() == psutil.STATUS_ZOMBIE
    assert not (control / "restart-worker-gpu0").exists()
    os.killpg(up.pid, signal.SIGTERM)
    assert up.wait(timeout=60) == 0
    shutil.rmtree(control, ignore_errors=True)


def _launcher_until(launcher: object, done: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:  # type: ignore[operator]
        launcher.step(time.monotonic())  # type: ignore[attr-defined]
        time.sleep(0.05)


def test_crash_loops_are_judged_by_readiness_not_by_a_stopwatch(tmp_path: Path) -> None:
    """A child that dies before READY=1 is a start failure (FATAL after 5); one that said READY=1 and
    then died — however soon — is not, and is restarted every time."""
    import sys

    from daemon.core.lifecycle import Stopper
    from daemon.launcher import MAX_QUICK_FAILS, ChildSpec, Launcher

    ready_then_die = ("from daemon.core.notify import Notifier; import sys, time; "
                      "assert Notifier().ready('up'); time.sleep(0.2); sys.exit(70)")
    specs = [ChildSpec("worked", [sys.executable, "-c", ready_then_die]),
             ChildSpec("broken", [sys.executable, "-c", "import sys; sys.exit(70)"])]
    (tmp_path / "control").mkdir()
    launcher = Launcher(specs, tmp_path / "control", Stopper())
    worked, broken = launcher.children
    try:
        _launcher_until(launcher, lambda: broken.state == "fatal" and worked.starts > MAX_QUICK_FAILS + 2, 120)
    finally:
        launcher._kill_all()
    assert broken.state == "fatal" and broken.starts == MAX_QUICK_FAILS
    assert worked.state != "fatal" and worked.starts > MAX_QUICK_FAILS + 2, (worked.state, worked.starts)
    assert worked.quick_fails == 0
    published = json.loads((tmp_path / "control" / "up.json").read_text())["children"]
    assert published["broken"]["state"] == "fatal" and published["worked"]["state"] != "fatal"


@pytest.mark.slow
def test_a_worker_killed_during_real_work_again_and_again_is_restarted_every_time(root: Path, media_dir: Path,
                                                                                  roles: Roles) -> None:
    """Six SIGKILLs, each once the worker is ready and on a job (7-10 s after its start on this machine
    unloaded, which the old 10 s stopwatch counted as start failures): `up` keeps restarting it."""
    env = env_for(root, LIPSYNCD_WORKER_MAX_ATTEMPTS="20")
    up = roles.start("up", env=env)
    control = root / ".lipsyncd" / "control"
    wait_for(lambda: (control / "up.json").exists(), 30, "up.json")
    digests = drop_many(root, media_dir, 16)

    def worker() -> dict[str, object]:
        return json.loads((control / "up.json").read_text())["children"]["worker-gpu0"]

    killed: list[int] = []
    for _ in range(6):
        wait_for(lambda: worker()["ready"] and worker()["pid"] not in (None, *killed)
                 and any((root / "processing").iterdir()), 60, "a ready worker on a job")
        pid = int(str(worker()["pid"]))
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            try:
                proc.kill()
            except psutil.Error:
                pass
        killed.append(pid)
    wait_for(lambda: len(entries(root / "done")) + len(entries(root / "failed")) >= 16, 300, "all 16 jobs")
    assert worker()["state"] != "fatal"
    check_outcome(root, digests, 16)
    os.killpg(up.pid, signal.SIGTERM)
    assert up.wait(timeout=60) == 0
