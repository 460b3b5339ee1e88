"""Shared fixtures: real share roots in tmp_path, tiny media made by ffmpeg, role processes that never leak."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from chat_server import ChatServer

REPO = Path(__file__).resolve().parents[1]


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def make_media(d: Path) -> Path:
    """Tiny clips in `d`: 1 s video (64x48), 1.5 s and 0.6 s tones, and longer ones to interrupt mid-job."""
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "1", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", str(d / "v.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=1.5", "-ar", "16000", str(d / "a.wav"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=330:d=0.6", "-ar", "16000", str(d / "short.wav"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "8", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", str(d / "long.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=220:d=8", "-ar", "16000", str(d / "long.wav"))
    # slow enough to interrupt mid-job with the copy engine (several seconds to encode)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "4", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", str(d / "talk.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=200:d=40", "-ar", "16000", str(d / "talk.wav"))
    return d


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    """A local DingTalk/WeCom/Feishu robot server checking signatures, keyword `lipsyncd`."""
    srv = ChatServer(ding_keyword="lipsyncd").start()
    yield srv
    srv.down()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "share"
    r.mkdir()
    return r


def env_for(root: Path, **overrides: str) -> dict[str, str]:
    """Environment for role processes: test-speed timings, the copy engine, no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNCD_")}
    env.update({
        "LIPSYNCD_ROOT": str(root),
        "LIPSYNCD_INTAKE_SCAN_INTERVAL_S": "0.2",
        "LIPSYNCD_INTAKE_SETTLE_S": "0.3",
        "LIPSYNCD_INTAKE_LOCAL_EVENTS": "false",
        "LIPSYNCD_WORKER_ENGINE": "copy",
        "LIPSYNCD_WORKER_POLL_INTERVAL_S": "0.2",
        "LIPSYNCD_WORKER_LEASE_S": "30",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


def _die_with_pytest() -> Callable[[], None] | None:
    """A child hook that has the kernel SIGKILL the role when pytest dies, even killed by a time limit.

    The teardown below never runs then, and the role, in a session of its own, would run on (with `up`'s
    own roles behind it). The signal follows the forking thread, so only children of the main thread get it.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    return lambda: libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG


class Roles:
    """Starts `python -m daemon ...` processes and guarantees none outlives the test."""

    def __init__(self, log_dir: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_dir = log_dir

    def start(self, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        name = "-".join(a for a in args if not a.startswith("-"))[:40] or "role"
        log = open(self.log_dir / f"{name}-{len(self.procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "daemon", *args], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_pytest())
        self.procs.append(proc)
        return proc

    def intake_and_worker(self, root: Path, env: dict[str, str], *worker_args: str) -> subprocess.Popen[bytes]:
        """An intake and a worker on `root`, returned once the intake made the share's folders: the worker."""
        self.start("intake", env=env)
        worker = self.start("worker", *worker_args, env=env)
        wait_for(lambda: (root / "inbox").is_dir(), 60, "share folders")
        return worker

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        i = self.procs.index(proc)
        for path in self.log_dir.glob(f"*-{i}.log"):
            return path.read_text(errors="replace")
        return ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[Roles]:
    logs = tmp_path / "logs"
    logs.mkdir()
    r = Roles(logs)
    yield r
    r.stop_all()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def drop_job(root: Path, name: str, audio: Path, video: Path, extra: str = "") -> None:
    """Drop a job like a producer: media first, the ticket last."""
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    shutil.copy(audio, inbox / f"{name}.wav")
    shutil.copy(video, inbox / f"{name}.mp4")
    tmp = inbox / f".{name}.toml.tmp"
    tmp.write_text(f'audio = "{name}.wav"\nvideo = "{name}.mp4"\n{extra}')
    tmp.rename(inbox / f"{name}.toml")


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def rendering(job_dir: Path) -> bool:
    """A claimed job whose renderer has started writing: an encoded segment or a partial result."""
    try:
        return any((job_dir / "work").glob("seg_*.mp4")) or any(job_dir.glob(".*.part.mp4"))
    except OSError:
        return False  # moved while we looked


def stage_job(root: Path, job_id: str = "j1") -> Path:
    """A minimal accepted job folder in staging/ (a job.json, no media): for claim and lease tests."""
    import json

    from daemon.core.share import Share

    Share(root).prepare()
    folder = root / "staging" / job_id
    (folder / "inputs").mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({
        "id": job_id, "batch": job_id, "ticket": "inputs/t.toml", "audio": "inputs/a.wav",
        "video": "inputs/v.mp4", "output": f"{job_id}.mp4", "engine": "copy", "accepted_at": 1.0, "key": "k"}))
    return folder


def ffmpeg_children() -> list[psutil.Process]:
    """ffmpeg processes this test process started that are still running (none may outlive a stop)."""
    return [p for p in psutil.Process().children(recursive=True) if "ffmpeg" in p.name()]


def _live_children() -> set[int]:
    """Pids of this process's running descendants (a zombie is dead: reaping it is the OS's cleanup)."""
    alive = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails a test that leaves a thread or a child process running after its own fixtures are torn down.

    Costs one thread list and one process-tree walk when the test is clean; a test whose threads or
    children are still winding down gets a generous deadline (a loaded 2-core box) before it fails.
    """
    threads, children = set(threading.enumerate()), _live_children()
    yield
    deadline = time.monotonic() + 15
    while True:
        new_threads = [t.name for t in threading.enumerate() if t not in threads and t.is_alive()]
        new_children = sorted(_live_children() - children)
        if not new_threads and not new_children:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    names = []
    for pid in new_children:
        try:
            names.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:80]}")
        except psutil.Error:
            names.append(str(pid))
    pytest.fail(f"the test leaked threads {new_threads} and child processes {names}", pytrace=False)
