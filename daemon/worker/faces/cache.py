"""The face cache: a whole video's boxes under <internal>/facecache/<key>.npy, keyed (by the finder)
on the source file's content hash, so a presenter reused under another name is analysed once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_KNOWN: dict[tuple[int, ...], str] = {}  # (device, inode, size, mtime, ctime) → hash, in this process
_KNOWN_MAX = 256


def content_hash(path: Path) -> str:
    """The file's content hash, read once per process for a file unchanged since (the face pass asks at
    the job's start, the preview at its end: a 1 GB presenter costs about a second each time)."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)  # ctime: no copy keeps it
        if (known := _KNOWN.get(key)) is not None:
            return known
        h = hashlib.blake2b(digest_size=20)
        while block := fh.read(1 << 20):
            h.update(block)
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[key] = digest = h.hexdigest()
    return digest


@dataclass(frozen=True)
class Entry:
    """One cache file: (K, 4) int32 boxes in output pixels for source frames 0..K-1."""

    path: Path

    def load(self, count: int) -> np.ndarray | None:
        """The boxes of frames 0..count-1, or None where the entry is missing or shorter."""
        if not self.path.exists():
            return None
        data = np.load(self.path)
        return data[:count] if len(data) >= count else None

    def save(self, boxes: np.ndarray) -> None:
        """Written to a temporary name and renamed: a reader never sees half an entry."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, boxes)
        os.replace(tmp, self.path)
