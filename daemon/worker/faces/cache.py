"""The face cache: a whole video's boxes under <internal>/facecache/<key>.npy, keyed (by the finder)
on the source file's content hash, so a presenter reused under another name is analysed once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def content_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


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
