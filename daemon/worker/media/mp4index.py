"""The index of one of our own MP4 files (segments, the result), read in-process: its tracks, the video
track's sample count and keyframes, the duration.

An ffprobe per file cost a process start (~50 ms in the media box) on the job's critical path: the last
segment's count before the mux, the result's count and its check after it (bench/RESULTS.md, issue 15).
ISO BMFF boxes: moov → mvhd (duration) and trak → mdia → hdlr (the track's kind), minf → stbl → stsz
(the sample count: what `ffprobe -count_packets` counts in a file that is not fragmented) and stss (the
sync samples; none: every sample is one). Anything else (a fragmented or truncated file) gives None: the
caller asks ffprobe.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_SYNC_ENTRIES = 1 << 20  # keyframes listed in one track at most (a 10-hour result has ~15 000)


@dataclass(frozen=True)
class Track:
    kind: str  # the handler: "vide", "soun", ...
    samples: int
    sync: tuple[int, ...] | None  # 0-based samples that are keyframes; None: every sample is one


@dataclass(frozen=True)
class Index:
    duration_s: float  # the movie's (mvhd), edit lists applied
    tracks: tuple[Track, ...]

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks if t.kind == "vide"), None)

    def has(self, kind: str) -> bool:
        return any(t.kind == kind for t in self.tracks)


def read(path: Path) -> Index | None:
    """The file's index; None when it is not a plain (unfragmented, whole) MP4."""
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            moov = next((span for kind, span in _boxes(f, 0, end) if kind == b"moov"), None)
            if moov is None:
                return None
            inside = list(_boxes(f, *moov))
            if any(kind == b"mvex" for kind, _ in inside):
                return None  # fragmented: the samples are in the fragments, not the index
            mvhd = next((span for kind, span in inside if kind == b"mvhd"), None)
            if mvhd is None:
                return None
            tracks = tuple(t for kind, trak in inside if kind == b"trak" and (t := _track(f, trak)) is not None)
            return Index(_duration(f, mvhd), tracks)
    except (OSError, ValueError, struct.error):
        return None


def video_samples(path: Path) -> int | None:
    """Samples of the first video track per the index; None when the file is not a plain MP4 we made or
    has no video track."""
    index = read(path)
    video = index.video if index is not None else None
    return video.samples if video is not None else None


def keyframes(path: Path) -> tuple[int, ...] | None:
    """The video track's keyframes (0-based sample numbers, in decode order); None as `video_samples`."""
    index = read(path)
    video = index.video if index is not None else None
    if video is None:
        return None
    return video.sync if video.sync is not None else tuple(range(video.samples))


def _duration(f: BinaryIO, mvhd: tuple[int, int]) -> float:
    version = _read(f, mvhd[0], 1)[0]  # version, flags(3), creation, modification, timescale, duration
    if version == 1:
        scale, length = struct.unpack(">IQ", _read(f, mvhd[0] + 20, 12))
    else:
        scale, length = struct.unpack(">II", _read(f, mvhd[0] + 12, 8))
    return length / scale if scale else 0.0


def _track(f: BinaryIO, trak: tuple[int, int]) -> Track | None:
    mdia = _child(f, trak, b"mdia")
    hdlr = _child(f, mdia, b"hdlr") if mdia is not None else None
    stbl = _child(f, mdia, b"minf", b"stbl") if mdia is not None else None
    if hdlr is None or stbl is None:
        return None
    kind = _read(f, hdlr[0] + 8, 4).decode("latin-1")  # version+flags, pre_defined, handler_type
    stsz = _child(f, stbl, b"stsz")
    if stsz is None:
        return None
    samples: int = struct.unpack(">I", _read(f, stsz[0] + 8, 4))[0]  # version+flags, sample_size, count
    stss = _child(f, stbl, b"stss")
    sync = None
    if stss is not None:
        entries = struct.unpack(">I", _read(f, stss[0] + 4, 4))[0]  # version+flags, entry_count
        if entries > MAX_SYNC_ENTRIES or 8 + 4 * entries > stss[1] - stss[0]:
            raise ValueError("a keyframe table longer than its box")
        numbers = struct.unpack(f">{entries}I", _read(f, stss[0] + 8, 4 * entries))  # 1-based
        sync = tuple(n - 1 for n in numbers)
    return Track(kind, samples, sync)


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
