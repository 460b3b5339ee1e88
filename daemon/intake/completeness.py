"""Does a media file look complete? A copy that pauses is stable but half there; its header tells.

WAV/RIFF, AIFF and Matroska (MKV/WebM) headers say how long the file is; an MP4/MOV is a chain of
boxes whose sizes must end exactly at the end of the file and include the index (`moov`, written last
by most exporters).
Other containers get one bounded ffprobe run that is asked only whether it saw the file end early.
Results are cached per (path, signature), so a waiting drop costs nothing per scan.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
from collections.abc import Hashable
from pathlib import Path

from daemon.intake import peek

log = logging.getLogger(__name__)
_MP4_FIRST = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"styp")
_EBML = b"\x1a\x45\xdf\xa3"
_UNKNOWN_SIZE = (0, 0xFFFFFFFF)  # streaming writers leave these when they cannot seek back
_MAX_BOXES = 100_000
_PROBE_TIMEOUT_S = 30.0
_EARLY_END = ("truncat", "moov atom not found", "partial file", "premature end", "unexpected end")


def header_verdict(path: Path) -> str | None:
    """Why `path` looks cut off according to its own header, or None (complete, or not a format we read)."""
    size, head, _ = peek.head_and_tail(path, 256)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return _riff(path, size, struct.unpack("<I", head[4:8])[0])
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        declared = struct.unpack(">I", head[4:8])[0] + 8
        return _short(declared, size) if head[4:8] != b"\xff\xff\xff\xff" else None
    if head[4:8] in _MP4_FIRST:
        return _boxes(path, size)
    if head[:4] == _EBML:
        return _matroska(head, size)
    return None


def _vint(data: bytes, at: int, strip: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at `at`: (value, length); None if it does not fit in `data`."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at:at + length], "big")
    if strip:
        value &= (1 << (7 * length)) - 1
    return value, length


def _matroska(head: bytes, size: int) -> str | None:
    """MKV/WebM: the EBML header, then a Segment whose declared size must fit in the file."""
    header = _vint(head, 4, strip=True)
    if header is None:
        return None
    at = 4 + header[1] + header[0]
    segment_id = _vint(head, at, strip=False)
    if segment_id is None or segment_id[0] != 0x18538067:
        return None
    declared = _vint(head, at + segment_id[1], strip=True)
    if declared is None or declared[0] == (1 << (7 * declared[1])) - 1:  # "unknown size": a live stream
        return None
    return _short(at + segment_id[1] + declared[1] + declared[0], size)


def _short(declared: int, size: int) -> str | None:
    if declared <= size:
        return None
    return f"its header says {declared:,} bytes but only {size:,} have arrived"


def _riff(path: Path, size: int, riff: int) -> str | None:
    if riff not in _UNKNOWN_SIZE and riff + 8 > size:
        return _short(riff + 8, size)
    offset = 12
    for _ in range(64):  # fmt, LIST, fact, ... then data
        header = peek.read(path, 8, offset)
        if len(header) < 8:
            return "it ends before its audio data begins"
        chunk, length = header[:4], struct.unpack("<I", header[4:8])[0]
        if chunk == b"data":
            if length in _UNKNOWN_SIZE:
                return None
            return _short(offset + 8 + length, size)
        offset += 8 + length + (length & 1)
    return None


def _boxes(path: Path, size: int) -> str | None:
    offset, seen = 0, set()
    for _ in range(_MAX_BOXES):
        if offset >= size:
            break
        header = peek.read(path, 16, offset)
        if len(header) < 8:
            return f"it ends inside a box header at byte {offset:,}"
        length, kind = struct.unpack(">I", header[:4])[0], header[4:8]
        if length == 1 and len(header) == 16:
            length = struct.unpack(">Q", header[8:16])[0]
        elif length == 0:  # "to the end of the file"
            length = size - offset
        if length < 8:
            return None  # not a box chain after all: the worker's probe judges the file
        if offset + length > size:
            return (f"its '{kind.decode('latin-1')}' box needs {offset + length:,} bytes "
                    f"but only {size:,} have arrived")
        seen.add(kind)
        offset += length
    if b"moov" not in seen and b"moof" not in seen:
        return "it has no index ('moov') yet: the export or the copy has not finished"
    return None


def probe_verdict(path: Path) -> str | None:
    """One bounded ffprobe over the file's descriptor: did it see the file end early?"""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None  # the worker probes it anyway
    with peek.opened(path) as fd:
        try:
            done = subprocess.run(
                [ffprobe, "-v", "error", "-protocol_whitelist", "file,fd", "-show_entries", "format=duration",
                 "-of", "csv=p=0", "-i", f"/dev/fd/{fd}"],
                pass_fds=(fd,), stdin=subprocess.DEVNULL, capture_output=True, timeout=_PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.info("probe of %s gave no verdict (%s); the worker will probe it", path.name, exc)
            return None
    said = done.stderr.decode("utf-8", "replace").lower()
    for phrase in _EARLY_END:
        if phrase in said:
            line = next(ln for ln in said.splitlines() if phrase in ln)
            return f"the media probe says it ends early ({line.strip()[:120]})"
    return None


class Completeness:
    """Cached verdicts: why each file looks incomplete (None = looks complete)."""

    def __init__(self, probe: bool = True) -> None:
        self.probe = probe
        self._cache: dict[str, tuple[Hashable, str | None]] = {}

    def verdict(self, path: Path, signature: Hashable) -> str | None:
        key = os.fspath(path)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        try:
            why = header_verdict(path)
            if why is None and self.probe and not _has_header_check(path):
                why = probe_verdict(path)
        except (peek.NotRegular, FileNotFoundError):
            why = None  # check_files names what it is instead
        self._cache[key] = (signature, why)
        return why

    def keep_only(self, paths: set[str]) -> None:
        for key in [k for k in self._cache if k not in paths]:
            del self._cache[key]


def _has_header_check(path: Path) -> bool:
    try:
        _, head, _ = peek.head_and_tail(path, 16)
    except (peek.NotRegular, OSError):
        return True
    return head[:4] in (b"RIFF", b"FORM", _EBML) or head[4:8] in _MP4_FIRST
