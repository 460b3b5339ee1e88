"""Reading a producer's file without ever blocking the scan: regular files only, non-blocking, bounded.

A ticket (or a named media file) may be a FIFO, a socket, a device or a folder: opening a FIFO for
reading blocks until a writer appears, and a device may do anything on open. So the path is lstat'ed
first and only a regular file is opened, with O_NONBLOCK | O_NOFOLLOW; fstat after the open proves it
is still the same regular file (not swapped for something else in between).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.core.errors import ShareUnreachable, is_unreachable

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


class NotRegular(Exception):
    """The path is not a regular file (FIFO, socket, device, folder, link); `kind` says which."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}")
        self.kind = kind


def kind_of(mode: int) -> str:
    """A producer's word for a non-file: what error.txt says the thing is."""
    for test, word in ((stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a link"), (stat.S_ISFIFO, "a pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return word
    return "a regular file" if stat.S_ISREG(mode) else "not a file"


@contextmanager
def opened(path: Path) -> Iterator[int]:
    """A read-only descriptor of the regular file at `path`; NotRegular for anything else."""
    try:
        before = os.lstat(path)
        if not stat.S_ISREG(before.st_mode):
            raise NotRegular(path, kind_of(before.st_mode))
        fd = os.open(path, _FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link that appeared after the lstat
            raise NotRegular(path, "a link") from None
        if is_unreachable(exc):
            raise ShareUnreachable(f"cannot read {path}: {exc.strerror}") from exc
        raise
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise NotRegular(path, kind_of(now.st_mode))
        yield fd
    finally:
        os.close(fd)


def read(path: Path, limit: int, offset: int = 0) -> bytes:
    """At most `limit` bytes from `offset` of a regular file (a file growing meanwhile is cut at limit)."""
    with opened(path) as fd:
        return _read_fd(fd, limit, offset)


def _read_fd(fd: int, limit: int, offset: int) -> bytes:
    chunks, got = [], 0
    while got < limit:
        try:
            chunk = os.pread(fd, min(limit - got, 1 << 20), offset + got)
        except OSError as exc:
            if is_unreachable(exc):
                raise ShareUnreachable(f"read failed: {exc.strerror}") from exc
            raise
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def head_and_tail(path: Path, count: int) -> tuple[int, bytes, bytes]:
    """(size, first `count` bytes, last `count` bytes) of a regular file, read through one descriptor."""
    with opened(path) as fd:
        size = os.fstat(fd).st_size
        head = _read_fd(fd, count, 0)
        tail = _read_fd(fd, count, size - count) if size > 2 * count else b""
        return size, head, tail
