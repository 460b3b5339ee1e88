"""One x264 encoder child for one chunk, fed from its own writer thread.

The segment encoder (encoder.py) keeps up to `media.encoders` lanes busy on consecutive chunks: a lane
takes the chunk's batches as they are rendered, writes them to its child at x264's pace and, after the
chunk's last frame, closes stdin and waits for the child to write the segment's index. Buffers go back
to the shared free queue as soon as their frames are in the pipe.
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from daemon.core.errors import EnvironmentFault
from daemon.worker.media import box, process


class Lane:
    """Encodes chunk `chunk` (`frames` frames) with the encoder command `argv`."""

    def __init__(self, argv: list[str], chunk: int, frames: int, pipe_size: int, timeout_s: float,
                 free: queue.Queue[np.ndarray], child_box: box.Box | None = None) -> None:
        self.chunk = chunk
        self._left = frames
        self._free = free
        self._timeout_s = timeout_s
        self._todo: queue.Queue[np.ndarray | None] = queue.Queue()
        self._error: BaseException | None = None
        self._code: int | None = None
        self.child = process.Child(argv, stdin=True, pipe_size=pipe_size, name="ffmpeg-encode", box=child_box)
        self.child.__enter__()
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
            code = self._code if self._code is not None else self.child.wait(10)
            raise EnvironmentFault(f"the encoder failed (exit {code}): {self._tail()}") from None
        raise error

    def abort(self) -> None:
        self._left = 0
        self._todo.put(None)
        self.child.close(force=True)  # a writer blocked in write() gets a broken pipe and ends
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while (frames := self._todo.get()) is not None:
            try:
                if self._error is None:
                    self.child.stdin.write(frames.data.cast("B"))
            except BaseException as exc:  # handed to the caller's thread by check()
                self._error = exc
            finally:
                self._free.put(frames if frames.base is None else frames.base)
        try:
            self.child.stdin.close()
            # never terminate an encoder on the success path: it writes the segment's index last
            self._code = self.child.wait(self._timeout_s)
        except BaseException as exc:
            self._error = self._error or exc

    def _tail(self) -> str:
        return " ".join(self.child.stderr_tail().strip().splitlines()[-2:])[:300]
