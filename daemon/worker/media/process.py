"""Every ffmpeg/ffprobe child runs through here: stderr always drained, bounded in time, always reaped.

ffmpeg-python's own run/probe helpers deadlock once stderr fills the pipe (reference/media.md §1.3),
so we only ever spawn through `Child`. Children run in process groups of their own, so a stop signal
meant for the worker never reaches them (the worker stops them itself, between chunks); closing their
pipes ends them by themselves, also when the worker is killed.
A child's stdout is one end of a Unix socket pair, not a pipe: `read_into` fills a whole buffer in one
blocking call (MSG_WAITALL) with the GIL released throughout. A pipe returns at most its size per read,
and each read's return waits for the GIL: beside a busy Python thread a reader got 137 frames/s of
720p through a pipe against 1415 through the socket on the GPU box (bench/RESULTS.md, issue 15
third round).
A child given a `box.Box` runs inside it (limits, no network, a narrow view); how it ended is judged
once, on a normal end: a limit hit is the file's fault (JobRejected), the box failing is ours.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from daemon.core.errors import EnvironmentFault
from daemon.worker.media import box as box_
from daemon.worker.media import tree
from daemon.worker.media.box import Box

log = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 64 * 1024
_REAP_GRACE_S = 5.0
_LOW_FREE_BYTES = 16 * 1024 * 1024


class ChildTimeout(Exception):
    """A child ran past its time limit and was killed."""


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr_tail: str


# what ffmpeg prints (strerror) when the disk or the share fails under it, rather than the input
_WRITE_FAULTS = ("No space left on device", "Disk quota exceeded", "Read-only file system",
                 "Stale file handle", "Input/output error")


def write_fault(stderr_tail: str, output: Path) -> EnvironmentFault | None:
    """An ffmpeg failure caused by the machine (disk full, quota, share I/O), not by the producer's media.

    Without this a full share reads as "the file could not be decoded" and good jobs land in failed/
    blaming the producer. A nearly full filesystem counts even if ffmpeg's message was cut off.
    """
    said = next((text for text in _WRITE_FAULTS if text in stderr_tail), None)
    try:
        st = os.statvfs(output.parent)
        free = st.f_bavail * st.f_frsize
    except OSError as exc:
        return EnvironmentFault(f"cannot check the disk of {output.parent}: {exc.strerror}")
    if said is None and free >= _LOW_FREE_BYTES:
        return None
    return EnvironmentFault(f"writing {output.name} failed: {said or 'disk nearly full'} "
                            f"({free / 1e6:.0f} MB free on {output.parent})")


def resolve(tool: str) -> str:
    """Absolute path of an executable, or EnvironmentFault naming what is missing."""
    path = shutil.which(tool)
    if path is None:
        raise EnvironmentFault(f"{tool} not found on PATH: install ffmpeg (apt-get install ffmpeg) "
                               "or set media.ffmpeg / media.ffprobe in config.toml")
    return path


class Child:
    """A running child process; use as a context manager so it is reaped on every exit path."""

    def __init__(self, argv: Sequence[str], *, stdin: bool = False, stdout: bool = False,
                 pipe_size: int = 0, name: str = "", box: Box | None = None) -> None:
        self.name = name or os.path.basename(argv[0])
        self.box = box
        self.argv = box.wrap(argv) if box is not None else list(argv)
        self._stopped = False  # we ended it ourselves: its exit says nothing about the file
        self._cpu_s: float | None = None  # CPU seconds it used, read at its exit (boxed children)
        self._want_stdin, self._want_stdout, self._pipe_size = stdin, stdout, pipe_size
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_len = 0
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: socket.socket | None = None  # our end of the child's stdout
        self._stdout: socket.SocketIO | None = None
        self._drain: threading.Thread | None = None

    def __enter__(self) -> Child:
        theirs: socket.socket | None = None
        if self._want_stdout:
            self._out, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            if self._pipe_size:
                _grow_socket(theirs, self._pipe_size)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE if self._want_stdin else subprocess.DEVNULL,
                stdout=theirs.fileno() if theirs is not None else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                bufsize=0,
                close_fds=True,
                # own session and process group (setsid, no fork hook): a signal meant for the worker (a
                # terminal's Ctrl-C, a manager's stop of the worker's group) must not kill a decoder
                # mid-chunk; a killed worker still ends us, as our pipes close
                start_new_session=True,
            )
        except FileNotFoundError:
            self._close_stdout()
            raise EnvironmentFault(f"{self.argv[0]} not found: install ffmpeg") from None
        finally:
            if theirs is not None:
                theirs.close()  # the child has it now: its exit is our end's EOF
        if self._out is not None:
            self._stdout = self._out.makefile("rb", buffering=0)
        if self._pipe_size and self.proc.stdin is not None:
            _grow_pipe(self.proc.stdin, self._pipe_size)
        self._drain = threading.Thread(target=self._drain_stderr, name=f"{self.name}-stderr", daemon=True)
        self._drain.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._close(force=exc_type is not None, judge=exc_type is None)

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc is not None and self.proc.stdin is not None
        return self.proc.stdin

    @property
    def stdout(self) -> socket.SocketIO:
        """The child's stdout as a raw stream (read, readinto); `read_into` fills whole buffers faster."""
        assert self._stdout is not None
        return self._stdout

    def read_into(self, view: memoryview) -> int:
        """Fill `view` (bytes) from the child's stdout; fewer bytes only at its end. One blocking call
        per buffer in the usual case, without the GIL (a signal or the end may cut one short)."""
        assert self._out is not None
        got = 0
        while got < len(view):
            k = self._out.recv_into(view[got:], len(view) - got, socket.MSG_WAITALL)
            if not k:
                break
            got += k
        return got

    def write_all(self, data: memoryview) -> None:
        """Write all of `data` (bytes) to the child's stdin. A raw pipe write returns after part of it
        when a signal reaches this thread mid-write (a stop request, SIGSTOP and SIGCONT, a debugger or
        profiler attaching): the rest is written here, not dropped (dropped, a segment under py-spy
        came out with 6 of its chunk's 250 frames, bench/RESULTS.md, issue 15 seventh round)."""
        stdin = self.stdin
        while data:
            data = data[stdin.write(data):]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr_tail(self) -> str:
        with self._lock:
            return b"".join(self._tail).decode("utf-8", "replace")

    def wait(self, timeout: float | None) -> int:
        """Wait for exit; on timeout kill it and raise ChildTimeout."""
        assert self.proc is not None
        try:
            code = self._reap(timeout)
        except subprocess.TimeoutExpired:
            self.close(force=True)
            raise ChildTimeout(f"{self.name} ran longer than {timeout:.0f} s and was stopped") from None
        if self._drain is not None:
            self._drain.join(timeout=_REAP_GRACE_S)
        self._judge(code)
        return code

    def kill(self) -> None:
        """SIGKILL without touching the pipes (safe while another thread reads them: it sees EOF)."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            self._stopped = True
            tree.kill(proc)

    def close(self, force: bool = False) -> None:
        """Close our pipe ends, then wait; terminate and kill if it does not end by itself.

        A normal close (not forced) judges how the child ended by its box, which may raise; a forced one
        runs on error and stop paths and never raises over what is already going on."""
        self._close(force, judge=True)

    def _close(self, force: bool, judge: bool) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass  # a broken pipe on close means the child is already gone
        self._close_stdout()
        running = force and proc.poll() is None
        inside = tree.held(proc.pid) if running else []  # see tree.kill: a box's sandbox may outlive it
        if running:
            self._stopped = True
            proc.terminate()  # pending until the SIGCONT: the child forks nothing more before it ends
            tree.resume(proc.pid)
        try:
            self._reap(_REAP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._stopped = True
            tree.kill(proc)
            proc.wait()
        tree.kill_left(inside)
        if self._drain is not None:
            self._drain.join(timeout=_REAP_GRACE_S)
        if judge and not force:
            self._judge(proc.returncode)

    def _close_stdout(self) -> None:
        for end in (self._stdout, self._out):
            if end is not None:
                end.close()

    def _reap(self, timeout: float | None) -> int:
        """Popen.wait; a boxed child's CPU time is read first, while it is still a zombie."""
        proc = self.proc
        assert proc is not None
        if self.box is not None and proc.returncode is None and self._cpu_s is None:
            if not box_.exited(proc.pid, timeout):
                raise subprocess.TimeoutExpired(self.argv, timeout or 0)
            self._cpu_s = box_.cpu_seconds(proc.pid)
        return proc.wait(timeout=timeout)

    def _judge(self, code: int) -> None:
        """Raise what the box makes of a non-zero exit (limit hit, box failure); once per child."""
        box, self.box = self.box, None
        if box is None or self._stopped:
            return
        verdict = box.verdict(code, self.stderr_tail(), self._cpu_s)
        if verdict is not None:
            log.warning("%s (pid %d) ended with %d under its box: %s", self.name, self.pid, code, verdict)
            raise verdict

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        stream = self.proc.stderr
        while True:
            block = stream.read(8192)
            if not block:
                break
            with self._lock:
                self._tail.append(block)
                self._tail_len += len(block)
                while self._tail_len > STDERR_TAIL_BYTES and len(self._tail) > 1:
                    self._tail_len -= len(self._tail.popleft())
        stream.close()


def run(argv: Sequence[str], timeout_s: float, *, capture_stdout: bool = False,
        max_stdout: int = 16 * 1024 * 1024, box: Box | None = None) -> Finished:
    """Run a child to completion within timeout_s; stdout (if captured) is bounded to max_stdout."""
    started = time.monotonic()
    with Child(argv, stdout=capture_stdout, box=box) as child:
        out = b""
        if capture_stdout:
            out = _read_bounded(child, max_stdout, started + timeout_s)
        remaining = max(0.1, started + timeout_s - time.monotonic())
        code = child.wait(remaining)
        return Finished(code, out, child.stderr_tail())


def _read_bounded(child: Child, limit: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    total = 0
    # the timer only stops the child; how it ended is judged in the caller's thread
    timer = threading.Timer(max(0.1, deadline - time.monotonic()), child._close, args=(True, False))
    timer.daemon = True
    timer.start()
    try:
        while True:
            block = child.stdout.read(65536)
            if not block:
                break
            total += len(block)
            if total > limit:
                child.close(force=True)
                raise ChildTimeout(f"{child.name} wrote more than {limit} bytes of output")
            chunks.append(block)
    except (OSError, ValueError):
        if time.monotonic() >= deadline:
            raise ChildTimeout(f"{child.name} did not finish in time and was stopped") from None
        raise
    finally:
        timer.cancel()
    if time.monotonic() >= deadline and child.proc is not None and child.proc.poll() not in (0, None):
        raise ChildTimeout(f"{child.name} did not finish in time and was stopped")
    return b"".join(chunks)


def _grow_socket(end: socket.socket, size: int) -> None:
    """What the child may have written ahead of our reads (the kernel caps it at net.core.wmem_max)."""
    try:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:
        log.debug("could not grow the socket buffer to %d bytes", size)


def _grow_pipe(pipe: IO[bytes], size: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), 1031, size)  # F_SETPIPE_SZ; Linux only, best effort
    except (OSError, ImportError, ValueError):
        log.debug("could not grow pipe to %d bytes", size)
