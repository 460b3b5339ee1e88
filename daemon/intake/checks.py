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
from daemon.core.ticket import Pair, Ticket
from daemon.intake.drop import Drop, lstat

_FINGERPRINT_BYTES = 1 << 20


def check_ticket_file(drop: Drop, max_bytes: int) -> bytes:
    """The ticket's bytes, refusing links and oversized files."""
    st = lstat(drop.ticket)
    if st is None:
        raise FileNotFoundError(drop.ticket)
    if stat.S_ISLNK(st.st_mode):
        raise JobRejected("file_symlink", name=drop.label)
    if st.st_size > max_bytes:
        raise JobRejected("ticket_too_large", ticket=drop.label, size=st.st_size, limit=max_bytes)
    return drop.ticket.read_bytes()


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
        if stat.S_ISLNK(st.st_mode):
            raise JobRejected("file_symlink", name=name)
        real = os.path.realpath(path)
        if os.path.commonpath([base, real]) != base:
            raise JobRejected("ticket_bad_name", ticket=drop.label, name=name,
                              why="leads outside the job's folder through a link")
        if not stat.S_ISREG(st.st_mode):
            raise JobRejected("media_invalid", name=name, detail="it is a folder or device, not a file")
        if st.st_size == 0:
            raise JobRejected("file_empty", name=name)
        if st.st_size > max_file_bytes:
            raise JobRejected("file_too_large", name=name, size=_mb(st.st_size), limit=_mb(max_file_bytes))


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
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(_FINGERPRINT_BYTES))
        if size > 2 * _FINGERPRINT_BYTES:
            fh.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
            h.update(fh.read(_FINGERPRINT_BYTES))
    return h.digest()


def _mb(size: int) -> str:
    return f"{size / 1048576:.1f} MB"
