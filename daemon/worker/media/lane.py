"""One x264 encoder child for one chunk, fed from its own writer thread.

The segment encoder (encoder.py) opens a lane per chunk as soon as the chunk's first batch is rendered. A lane
takes the chunk's batches as they come; its child starts once the lane `after` it has finished (so at most
`media.encoders` + 1 children run, and the last chunk's pieces beside them), then it writes the batches at
x264's pace and, after the chunk's last frame, closes stdin, waits for the child to write the segment's index
and counts the segment's frames (the check the mux needs, done while other chunks still encode). Until its
child starts, a lane only holds its batches: the render loop goes on rendering the next chunk instead of
waiting for an encoder (0.5 s of a 60 s 720p job, 1.1 s at 1080p on the GPU box, bench/RESULTS.md), and the
shared pool of buffers still bounds the memory. Buffers go back to the pool as soon as their frames are in the
pipe.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import numpy as np

from daemon.core.errors import EnvironmentFault
from daemon.worker.media import box, process


class Lane:
    """Encodes chunk `chunk` (`frames` frames) with the encoder command `argv`, once `after` is set."""

    def __init__(self, argv: list[str], chunk: int, frames: int, pipe_size: int, timeout_s: float,
                 free: queue.Queue[np.ndarray], child_box: box.Box | None = None,
                 after: threading.Event | None = None, count: Callable[[], int | None] | None = None) -> None:
        self.chunk = chunk
        self.finished = threading.Event()  # the child is done (or never started): the next lanes may go
        self._argv, self._pipe_size, self._child_box = argv, pipe_size, child_box
        self._left = frames
        self._free = free
        self._timeout_s = timeout_s
        self._after = after
        self._count = count
        self.counted: int | None = None  # frames the finished segment probes with (`count`), once written
        self._todo: queue.Queue[np.ndarray | None] = queue.Queue()
        self._error: BaseException | None = None
        self._code: int | None = None
        self._lock = threading.Lock()  # the child's start against abort()
        self._aborted = threading.Event()
        self.child: process.Child | None = None
        self._thread = threading.Thread(target=self._run, name=f"ffmpeg-encode-{chunk}", daemon=True)
        self._thread.start()

    @property
    def wants_frames(self) -> bool:
        return self._left > 0

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def put(self, frames: np.ndarray) -> None:
        """Queue a batch (a leading slice of a free-queue buffer); the chunk's last one closes stdin."""
        if len(frames) > self._left:
            raise ValueError(f"chunk {self.chunk} got {len(frames)} frames with {self._left} left")
        self._left -= len(frames)
        self._todo.put(frames)
        if self._left == 0:
            self._todo.put(None)

    def close_early(self) -> None:
        """Stop feeding (an interrupted chunk): the child finishes a short segment resume will redo."""
        if self._left > 0:
            self._left = 0
            self._todo.put(None)

    def join(self) -> None:
        """Wait until the segment is written; EnvironmentFault if the child failed."""
        self._thread.join()
        self.check()

    def check(self) -> None:
        """Raise what went wrong so far in the writer thread (the caller's thread sees it with its type)."""
        error = self._error
        if error is None and self._code in (None, 0):
            return
        if isinstance(error, process.ChildTimeout):
            raise EnvironmentFault(f"the encoder of chunk {self.chunk + 1} timed out: {error}") from None
        if error is None or isinstance(error, (OSError, ValueError)):  # broken pipe: the child died
            code = self._code
            if code is None and self.child is not None:
                code = self.child.wait(10)
            raise EnvironmentFault(f"the encoder failed (exit {code}): {self._tail()}") from None
        raise error

    def abort(self) -> None:
        with self._lock:
            self._aborted.set()
            child = self.child
        self._left = 0
        self._todo.put(None)
        if child is not None:
            child.close(force=True)  # a writer blocked in write() gets a broken pipe and ends
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._wait_turn()
            with self._lock:
                if not self._aborted.is_set():
                    child = process.Child(self._argv, stdin=True, pipe_size=self._pipe_size,
                                          name="ffmpeg-encode", box=self._child_box)
                    child.__enter__()  # a child that did not start stays None: its batches go back
                    self.child = child
        except BaseException as exc:  # handed to the caller's thread by check()
            self._error = exc
        try:
            self._write(self.child)
        finally:
            self.finished.set()
        self._count_segment()

    def _wait_turn(self) -> None:
        while self._after is not None and not self._after.wait(0.1):
            if self._aborted.is_set():
                return

    def _write(self, child: process.Child | None) -> None:
        while (frames := self._todo.get()) is not None:
            try:
                if self._error is None and child is not None:
                    child.write_all(frames.data.cast("B"))
            except BaseException as exc:  # handed to the caller's thread by check()
                self._error = exc
            finally:
                self._free.put(frames if frames.base is None else frames.base)
        if child is None:
            return
        try:
            child.stdin.close()
            # never terminate an encoder on the success path: it writes the segment's index last
            self._code = child.wait(self._timeout_s)
        except BaseException as exc:
            self._error = self._error or exc

    def _count_segment(self) -> None:
        """The finished segment's frames (here, not all of them before the mux), after `finished` is set:
        the probe does not hold back the next lane's child (it did: the next child waited for it)."""
        if self._code != 0 or self._error is not None or self._count is None:
            return
        try:
            self.counted = self._count()
        except BaseException as exc:
            self._error = exc

    def _tail(self) -> str:
        if self.child is None:
            return ""
        return " ".join(self.child.stderr_tail().strip().splitlines()[-2:])[:300]
