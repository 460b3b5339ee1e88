"""Inbox hygiene: a loose media file no ticket has named for `orphan_timeout_min` leaves inbox/.

It moves (one rename, nothing deleted) to `failed/<name>-unclaimed/inputs/` with a plain error.txt
saying how to use it after all. Its timer restarts whenever the file changes; temporary names (copies
in progress), tickets, folders and files still open for writing are never moved.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path

from daemon.core.ticket import nfc
from daemon.intake.drop import entries_of, is_temporary, signature
from daemon.intake.settle import Settler


class Sweeper:
    def __init__(self, inbox: Path, timeout_s: float, settler: Settler) -> None:
        self.inbox = inbox
        self.timeout_s = timeout_s
        self.settler = settler  # one entry per loose file, keyed by its name

    def due(self, named: Iterable[str]) -> list[str]:
        """Loose files nobody named that stayed unchanged past the timeout (observed once per scan)."""
        claimed = {nfc(n) for n in named}
        loose = {}
        for entry in entries_of(self.inbox):
            if is_temporary(entry.name) or entry.name.lower().endswith(".toml") or nfc(entry.name) in claimed:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                loose[entry.name] = st
        for name, st in loose.items():
            self.settler.observe(name, {name: signature(st)})
        self.settler.keep_only(loose)
        return sorted(n for n in loose if self.settler.unchanged_for(n) > self.timeout_s)
