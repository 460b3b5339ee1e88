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
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

import numpy as np

from daemon.worker.media.decoder import FrameSource

DEPTH = 2  # decoded batches a reader keeps ready
Take: TypeAlias = Callable[[threading.Event], 'np.ndarray | None']  # a free buffer; None once the event is set
_Item: TypeAlias = 'tuple[int, np.ndarray] | BaseException'


class ReadAhead:
    """Reads `spans` ((start, count) in increasing order) from `source` into buffers from `take`."""

    def __init__(self, source: FrameSource, spans: Iterable[tuple[int, int]], take: Take,
                 depth: int = DEPTH) -> None:
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


class Interleaved:
    """Several ReadAheads, each with a decoder child of its own, on alternate blocks; batches in order.

    One ffmpeg writing raw frames into a pipe is serial: on the GPU box it delivered ~1000 frames/s
    at 720p alone and ~700 beside the encoders, the render loop's bound once the engine stage took
    less (bench/RESULTS.md, issue 15 second round). Reader k decodes blocks k, k + n, k + 2n... (a
    block: the batches of the whole chunks in `Plan.block_frames`, at least a GOP of x264's default);
    its decoder seeks at each of them (FrameSource restarts on a jump), a cost of a fraction of a GOP.
    """

    def __init__(self, sources: Sequence[FrameSource], blocks: Sequence[Sequence[tuple[int, int]]],
                 take: Take) -> None:
        ways = max(1, min(len(sources), len(blocks)))
        self._readers = [ReadAhead(sources[k], [span for block in blocks[k::ways] for span in block], take)
                         for k in range(ways)]
        for unused in sources[ways:]:
            unused.close()
        self._order = iter([k % ways for k, block in enumerate(blocks) for _ in block])
        self._closed = False

    def get(self) -> tuple[int, np.ndarray]:
        """The next (start, frames) in frame order, from the reader of its chunk."""
        return self._readers[next(self._order)].get()

    def close(self) -> None:
        """Stop every reader (and its decoder child); again is a no-op."""
        if not self._closed:
            self._closed = True
            for reader in self._readers:
                reader.close()

    @property
    def waited_for_buffers(self) -> float:
        return sum(reader.waited_for_buffers for reader in self._readers)

    @staticmethod
    def held(ways: int) -> int:
        """Buffers the readers beyond the first can hold at once (ready batches + one being filled)."""
        return (ways - 1) * (DEPTH + 1)
