"""The producers of a fault run: they drop jobs like people do (media first, the ticket last), good ones
with bad ones mixed in, and remember the digest of every file that reached its final name in inbox/.

A producer whose copy hits a full share does what an SMB client's user does: removes its partial copy
and tries again a little later. Only files that landed count as submitted.
"""

from __future__ import annotations

import errno
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# kind → (expected terminal folder, expected report code, text expected in error.txt)
EXPECT: dict[str, tuple[str, str, str]] = {
    "good": ("done", "ok", ""),
    "long": ("done", "ok", ""),
    "syntax": ("failed", "ticket_syntax", ""),
    "missing": ("failed", "files_missing", ""),
    "garbage": ("failed", "media_unreadable", "cannot be read as video or audio"),
    "audio_as_video": ("failed", "media_audio_as_video", "contains only sound"),
}
BAD = ("syntax", "missing", "garbage", "audio_as_video")


@dataclass
class Dropped:
    name: str  # the ticket's stem; job ids start with it
    kind: str
    files: dict[str, str] = field(default_factory=dict)  # file name in inbox/ → sha256 of what landed
    dropped_at: float = 0.0  # wall clock when the ticket landed; 0 if it never did

    @property
    def expect(self) -> tuple[str, str, str]:
        return EXPECT[self.kind]


class Producer:
    def __init__(self, inbox: Path, media: Path, rng: random.Random, retry_for_s: float = 300.0) -> None:
        self.inbox = inbox
        self.rng = rng
        self.retry_for_s = retry_for_s
        self.media = {n: (media / n).read_bytes() for n in ("short.wav", "v.mp4", "talk.wav", "talk.mp4")}
        self.dropped: list[Dropped] = []
        self.full_retries = 0  # copies refused with ENOSPC and retried
        self.lock = threading.Lock()
        self._seq = 0

    def pick_kind(self, bad_share: float, long_share: float) -> str:
        roll = self.rng.random()
        if roll < bad_share:
            return self.rng.choice(BAD)
        return "long" if roll < bad_share + long_share else "good"

    def drop(self, kind: str, priority: int = 0) -> Dropped:
        with self.lock:
            self._seq += 1
            job = Dropped(f"{kind[0]}{self._seq:05d}", kind)
            garbage = self.rng.randbytes(50_000) if kind == "garbage" else b""
            self.dropped.append(job)
        audio, video = f"{job.name}.wav", f"{job.name}.mp4"
        files = {"good": {audio: self.media["short.wav"], video: self.media["v.mp4"]},
                 "long": {audio: self.media["talk.wav"], video: self.media["talk.mp4"]},
                 "syntax": {audio: self.media["short.wav"], video: self.media["v.mp4"]},
                 "missing": {video: self.media["v.mp4"]},  # the ticket names an audio never sent
                 "garbage": {audio: self.media["short.wav"], video: garbage},
                 "audio_as_video": {audio: self.media["short.wav"], video: self.media["short.wav"]}}[kind]
        for name, data in files.items():
            self._land(name, data, job)
        ticket = f'audio = "{audio}"\nvideo = "{video}"\n' + (f"priority = {priority}\n" if priority else "")
        if kind == "syntax":
            ticket = f'audio = "{audio}\nvideo = {video}"\n'  # an unterminated string
        self._land(f"{job.name}.toml", ticket.encode(), job)
        job.dropped_at = time.time()
        return job

    def _land(self, name: str, data: bytes, job: Dropped) -> None:
        """Copy under a temporary name, then rename; on a full share remove the partial copy and retry."""
        tmp = self.inbox / f".{name}.part"
        deadline = time.monotonic() + self.retry_for_s
        while True:
            try:
                tmp.write_bytes(data)
                tmp.rename(self.inbox / name)
                break
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if exc.errno != errno.ENOSPC or time.monotonic() > deadline:
                    raise
                with self.lock:
                    self.full_retries += 1
                time.sleep(1.0)
        job.files[name] = hashlib.sha256(data).hexdigest()
