"""The video sample count in the index of one of our own MP4 files (segments, the result), read in-process.

An ffprobe per file cost a process start (~50 ms in the media box) on the job's critical path twice: the
last segment's count before the mux and the result's after it (bench/RESULTS.md, issue 15 sixth round).
ISO BMFF boxes: moov → trak (handler "vide") → mdia → minf → stbl → stsz, whose sample count is the
number of video packets (what `ffprobe -count_packets` counts in a file that is not fragmented). Anything
else (a fragmented or truncated file, no video track) gives None: the caller asks ffprobe.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def video_samples(path: Path) -> int | None:
    """Samples of the first video track per the index; None when the file is not a plain MP4 we made."""
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            moov = next((span for kind, span in _boxes(f, 0, end) if kind == b"moov"), None)
            if moov is None:
                return None
            inside = list(_boxes(f, *moov))
            if any(kind == b"mvex" for kind, _ in inside):
                return None  # fragmented: the samples are in the fragments, not the index
            for kind, trak in inside:
                if kind == b"trak" and (count := _video_track(f, trak)) is not None:
                    return count
    except (OSError, ValueError, struct.error):
        return None
    return None


def _video_track(f: BinaryIO, trak: tuple[int, int]) -> int | None:
    mdia = _child(f, trak, b"mdia")
    if mdia is None:
        return None
    hdlr = _child(f, mdia, b"hdlr")
    if hdlr is None or _read(f, hdlr[0] + 8, 4) != b"vide":  # version+flags, pre_defined, handler_type
        return None
    stsz = _child(f, mdia, b"minf", b"stbl", b"stsz")
    if stsz is None:
        return None
    count: int = struct.unpack(">I", _read(f, stsz[0] + 8, 4))[0]  # version+flags, sample_size, count
    return count


def _child(f: BinaryIO, parent: tuple[int, int], *path: bytes) -> tuple[int, int] | None:
    span = parent
    for name in path:
        found = next((s for kind, s in _boxes(f, *span) if kind == name), None)
        if found is None:
            return None
        span = found
    return span


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, tuple[int, int]]]:
    """(type, (payload start, payload end)) of the boxes in [start, end)."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", _read(f, pos, 8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", _read(f, pos + 8, 8))[0], 16
        elif size == 0:
            size = end - pos  # to the end of the enclosing box
        if size < header or pos + size > end:
            raise ValueError(f"box {kind!r} at {pos} runs past its parent")
        yield kind, (pos + header, pos + size)
        pos += size


def _read(f: BinaryIO, at: int, n: int) -> bytes:
    f.seek(at)
    data = f.read(n)
    if len(data) != n:
        raise ValueError("truncated")
    return data
