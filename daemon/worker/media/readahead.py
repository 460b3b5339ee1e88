"""Decoding ahead: a thread fills the next batches of frames while the caller renders the current one.

The decoder child only runs while something reads its pipe, and a pipe holds a third of a 1080p frame,
so without a reader of its own the decoder stood still for every batch the engine and the encoder
worked on (decode was a fifth of a wav2lip run on the GPU box, bench/RESULTS.md). Batches come back
in order; what the reader met (a truncated video...) is raised in the caller's thread with its type.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeAlias

import numpy as np

from daemon.worker.media.decoder import FrameSource

Take: TypeAlias = Callable[[threading.Event], 'np.ndarray | None']  # a free buffer; None once the event is set
_Item: TypeAlias = 'tuple[int, np.ndarray] | BaseException'


class ReadAhead:
    """Reads `spans` ((start, count) in increasing order) from `source` into buffers from `take`."""

    def __init__(self, source: FrameSource, spans: Iterable[tuple[int, int]], take: Take,
                 depth: int = 2) -> None:
        self._source = source
        self._spans = spans
        self._take = take
        self._ready: queue.Queue[_Item] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.waited_for_buffers = 0.0  # seconds the reader spent waiting for the consumer's buffers
        self._thread = threading.Thread(target=self._run, name="ffmpeg-decode-reader", daemon=True)
        self._thread.start()

    def get(self) -> tuple[int, np.ndarray]:
        """The next (start, frames); frames is a leading slice of a buffer from `take`."""
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop reading ahead: the decoder child is killed, the thread joined, the source closed."""
        self._stop.set()
        self._source.halt()
        self._thread.join(timeout=60)
        self._source.close()

    def _run(self) -> None:
        try:
            for start, count in self._spans:
                waiting = time.monotonic()
                buf = self._take(self._stop)
                self.waited_for_buffers += time.monotonic() - waiting
                if buf is None:
                    return
                frames = buf[:count]
                self._source.read(start, count, frames)
                if not self._put((start, frames)):
                    return
        except BaseException as exc:  # handed over by get(); after close() nobody is listening
            if not self._stop.is_set():
                self._put(exc)

    def _put(self, item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
