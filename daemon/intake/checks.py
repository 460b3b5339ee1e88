"""Filesystem checks on a drop's files: no links, nothing outside the job, size caps, no empty media.

Runs once a drop has settled. Name checks that need no filesystem live in core.ticket.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from daemon.core.errors import JobRejected
from daemon.core.ticket import Pair, Ticket, printable
from daemon.intake import peek
from daemon.intake.drop import Drop, lstat

_FINGERPRINT_BYTES = 1 << 20


def check_ticket_file(drop: Drop, max_bytes: int) -> bytes:
    """The ticket's bytes, refusing links, special files and oversized files; never blocks."""
    st = lstat(drop.ticket)
    if st is None:
        raise FileNotFoundError(drop.ticket)
    if stat.S_ISLNK(st.st_mode):
        raise JobRejected("file_symlink", name=drop.label)
    if not stat.S_ISREG(st.st_mode):
        raise JobRejected("media_invalid", name=drop.label, detail=f"it is {peek.kind_of(st.st_mode)}, not a file")
    if st.st_size > max_bytes:
        raise JobRejected("ticket_too_large", ticket=drop.label, size=st.st_size, limit=max_bytes)
    try:
        raw = peek.read(drop.ticket, max_bytes + 1)  # +1: a ticket that grew since the lstat is seen
    except peek.NotRegular as exc:
        raise JobRejected("media_invalid", name=drop.label, detail=f"it is {exc.kind}, not a file") from None
    if len(raw) > max_bytes:
        raise JobRejected("ticket_too_large", ticket=drop.label, size=len(raw), limit=max_bytes)
    return raw


def missing_files(drop: Drop, ticket: Ticket) -> list[str]:
    """Named files that are not there yet, or still empty (a copy that has not started writing)."""
    out = []
    for name in ticket.files:
        st = lstat(drop.base / name)
        if st is None or (stat.S_ISREG(st.st_mode) and st.st_size == 0):
            out.append(name)
    return out


def check_files(drop: Drop, ticket: Ticket, max_file_bytes: int) -> None:
    """Every named file is a regular file inside the job's folder and within the size cap."""
    base = os.path.realpath(drop.base)
    for name in ticket.files:
        path = drop.base / name
        st = lstat(path)
        if st is None:
            raise FileNotFoundError(path)
        shown = printable(name)
        if stat.S_ISLNK(st.st_mode):
            raise JobRejected("file_symlink", name=shown)
        real = os.path.realpath(path)
        if os.path.commonpath([base, real]) != base:
            raise JobRejected("ticket_bad_name", ticket=drop.label, name=shown,
                              why="leads outside the job's folder through a link")
        if not stat.S_ISREG(st.st_mode):
            raise JobRejected("media_invalid", name=shown, detail=f"it is {peek.kind_of(st.st_mode)}, not a file")
        if st.st_size == 0:
            raise JobRejected("file_empty", name=shown)
        if st.st_size > max_file_bytes:
            raise JobRejected("file_too_large", name=shown, size=_mb(st.st_size), limit=_mb(max_file_bytes))


def job_key(drop: Drop, ticket: Ticket, pair: Pair, engine: str) -> str:
    """Identity of a job for duplicate detection: what to render and the media's fingerprints."""
    digest = hashlib.sha256()
    what = {"engine": engine, "options": ticket.options, "output": pair.output}
    digest.update(json.dumps(what, sort_keys=True).encode())
    for name in (pair.audio, pair.video):
        digest.update(_fingerprint(drop.base / name))
    return digest.hexdigest()[:32]


def _fingerprint(path: Path) -> bytes:
    """Size plus hashes of the first and last MiB: cheap on 20 GB files, precise enough for duplicates."""
    try:
        size, head, tail = peek.head_and_tail(path, _FINGERPRINT_BYTES)
    except peek.NotRegular as exc:  # swapped for a FIFO or link since check_files
        raise JobRejected("media_invalid", name=printable(path.name), detail=f"it is {exc.kind}, not a file") from None
    h = hashlib.sha256(str(size).encode())
    h.update(head)
    h.update(tail)
    return h.digest()


def _mb(size: int) -> str:
    return f"{size / 1048576:.1f} MB"
