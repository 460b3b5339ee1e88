"""Which files some local process still holds open for writing: the kernel's answer, from /proc.

Where intake runs on the machine that receives the writes (Samba or NFS served from this box), a
copy that stalls keeps its handle open in smbd/nfsd long after the file stopped changing; the
descriptor's flags in /proc/<pid>/fdinfo say whether it was opened for writing. Processes of other
users are invisible without root (or CAP_SYS_PTRACE): then this check sees less, never more.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

_WRITE_MODES = (os.O_WRONLY, os.O_RDWR)


def open_for_writing(paths: Iterable[Path], proc: Path = Path("/proc")) -> dict[str, str]:
    """{path: "pid 123 (smbd)"} for each given regular file (or file below a given folder) a process
    other than us has open for writing."""
    wanted = _identities(paths)
    if not wanted:
        return {}
    prefixes = tuple({os.path.realpath(os.path.dirname(p)) for p in wanted.values()})
    held = Writers(prefixes, proc)
    return {path: held.by[key] for key, path in wanted.items() if key in held.by}


class Writers:
    """One look at /proc: every file under `prefixes` some other process holds open for writing.

    Intake takes one per scan (lazily, on the first commit that needs it) instead of one per drop: with
    hundreds of drops accepted in one scan, /proc is walked once."""

    def __init__(self, prefixes: tuple[str, ...], proc: Path = Path("/proc")) -> None:
        self.by: dict[tuple[int, int], str] = {}
        me = os.getpid()
        for pid in _pids(proc):
            if pid == me:
                continue
            for fd, target in _descriptors(proc, pid):
                if not target.startswith(prefixes):
                    continue  # cheap filter first: only descriptors under the share's folders are stat'ed
                hit = _identity(proc / str(pid) / "fd" / fd)
                if hit is not None and _writable(proc / str(pid) / "fdinfo" / fd):
                    self.by[hit] = f"pid {pid} ({_name(proc, pid)})"

    def holding(self, paths: Iterable[Path]) -> dict[str, str]:
        """{path: who} for the given files (or files below given folders) held open for writing."""
        return {path: self.by[key] for key, path in _identities(paths).items() if key in self.by}


def _identities(paths: Iterable[Path]) -> dict[tuple[int, int], str]:
    wanted: dict[tuple[int, int], str] = {}
    for path in paths:
        for file in _files(path):
            try:
                st = os.stat(file, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                wanted[(st.st_dev, st.st_ino)] = os.fspath(file)
    return wanted


def _files(path: Path) -> list[Path]:
    """The path itself, or every file below it when it is a folder (bounded like the scan)."""
    if not path.is_dir() or path.is_symlink():
        return [path]
    out: list[Path] = []
    for dirpath, _dirs, names in os.walk(path):
        out.extend(Path(dirpath) / n for n in names)
        if len(out) > 10_000:
            break
    return out


def _pids(proc: Path) -> list[int]:
    try:
        return [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError:
        return []


def _descriptors(proc: Path, pid: int) -> list[tuple[str, str]]:
    folder = proc / str(pid) / "fd"
    try:
        names = os.listdir(folder)
    except OSError:  # gone, or another user's process we may not look into
        return []
    out = []
    for fd in names:
        try:
            out.append((fd, os.readlink(folder / fd)))
        except OSError:
            continue
    return out


def _identity(link: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(link)  # follows the magic link to the open file itself
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _writable(fdinfo: Path) -> bool:
    try:
        text = fdinfo.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags:"):
            return int(line.split()[1], 8) & os.O_ACCMODE in _WRITE_MODES
    return False


def _name(proc: Path, pid: int) -> str:
    try:
        return (proc / str(pid) / "comm").read_text().strip()
    except OSError:
        return "?"
