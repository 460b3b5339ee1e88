"""What a producer dropped: loose `<name>.toml` tickets in inbox/ or one folder per job, and their files.

Scanning inbox/ (top level, plus one level into job folders) is the source of truth: inotify sees nothing
that other hosts write over SMB/NFS. Every share error that means "unreachable" aborts the scan as
ShareUnreachable; only ENOENT means a file is really not there.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from daemon.core.errors import JobRejected, ShareUnreachable, is_unreachable
from daemon.core.ticket import printable

TEMP_PATTERNS = (".*", "*.part", "*.tmp", "*.crdownload", "~$*", "._*", "Thumbs.db", "desktop.ini")
MAX_FOLDER_FILES = 10_000


def is_temporary(name: str) -> bool:
    """Names copy tools and editors use while a file is not finished (or OS clutter)."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, pat.lower()) for pat in TEMP_PATTERNS)


@dataclass(frozen=True)
class Drop:
    ticket: Path  # the ticket file
    base: Path  # names in the ticket are relative to this folder
    folder: Path | None = None  # the job folder, for the folder form
    other_tickets: tuple[str, ...] = ()  # further tickets in the same folder (an error)

    @property
    def key(self) -> str:
        return str(self.folder or self.ticket)

    @property
    def label(self) -> str:
        """How producers know this drop: the ticket name, or folder/ticket."""
        name = f"{self.folder.name}/{self.ticket.name}" if self.folder else self.ticket.name
        return printable(name)


def scan(inbox: Path) -> list[Drop]:
    drops = []
    for entry in entries_of(inbox):
        if is_temporary(entry.name):
            continue
        if _is_ticket_name(entry.name) and not _is_dir(entry):
            drops.append(Drop(ticket=Path(entry.path), base=inbox))
        elif _is_dir(entry) and not entry.is_symlink():
            tickets = sorted(e.name for e in entries_of(Path(entry.path))
                             if _is_ticket_name(e.name) and not is_temporary(e.name) and not _is_dir(e))
            if tickets:
                folder = Path(entry.path)
                drops.append(Drop(ticket=folder / tickets[0], base=folder, folder=folder,
                                  other_tickets=tuple(tickets[1:])))
    return drops


def lstat(path: Path) -> os.stat_result | None:
    """lstat that tells "not there" (None) from "share away" (ShareUnreachable)."""
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        if is_unreachable(exc):
            raise ShareUnreachable(f"cannot stat {path}: {exc.strerror}") from exc
        if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):  # a name no file can have, or a link loop
            raise JobRejected("media_invalid", name=printable(path.name), detail=exc.strerror) from None
        raise


def signature(st: os.stat_result | None) -> tuple[int, int, int, int]:
    """(mode, size, mtime, ctime) in ns; ctime catches copy tools that restore an old mtime."""
    if st is None:
        return (-1, -1, -1, -1)
    return (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def folder_files(folder: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below a job folder (relative name, lstat), bounded; symlinks are not followed."""
    count = 0
    stack = [folder]
    while stack:
        current = stack.pop()
        for entry in entries_of(current):
            count += 1
            if count > MAX_FOLDER_FILES:
                return
            st = lstat(Path(entry.path))
            if st is None:
                continue
            yield os.path.relpath(entry.path, folder), st
            if stat.S_ISDIR(st.st_mode):
                stack.append(Path(entry.path))


def _is_ticket_name(name: str) -> bool:
    return name.lower().endswith(".toml")


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def entries_of(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        if is_unreachable(exc):
            raise ShareUnreachable(f"cannot list {path}: {exc.strerror}") from exc
        raise
