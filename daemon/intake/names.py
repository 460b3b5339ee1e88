"""Finding the file a ticket names as the producer's machine wrote it: exact name first, else under NFC.

macOS writes names in NFD ("e" + combining accent), most editors write tickets in NFC ("é"): the bytes
differ, the name does not. Two files whose names differ only by normalisation are ambiguous, and said so.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

from daemon.core.errors import JobRejected
from daemon.core.ticket import Pair, Ticket, nfc, printable

_MAX_LISTED = 10_000


class Names:
    """Directory listings by NFC name for one scan (each folder listed at most once)."""

    def __init__(self) -> None:
        self._listed: dict[str, dict[str, list[str]]] = {}

    def _listing(self, folder: Path) -> dict[str, list[str]]:
        key = os.fspath(folder)
        if key not in self._listed:
            table: dict[str, list[str]] = {}
            try:
                with os.scandir(folder) as it:
                    for i, entry in enumerate(it):
                        if i >= _MAX_LISTED:
                            break
                        table.setdefault(nfc(entry.name), []).append(entry.name)
            except OSError:
                pass  # missing or unreadable: names stay as written, the scan's lstat tells why
            self._listed[key] = table
        return self._listed[key]

    def resolve(self, base: Path, name: str, ticket: str) -> str:
        """The name as it is on disk (component by component), or as written when nothing matches."""
        parts, folder = [], base
        for part in PurePosixPath(name).parts:
            found = self._listing(folder).get(nfc(part), [])
            if len(found) > 1:  # even with an exact match: which one the producer meant is unknowable
                raise JobRejected("name_ambiguous", ticket=ticket, name=printable(name),
                                  names=", ".join(printable(f) for f in sorted(found)))
            actual = part if part in found or not found else found[0]
            parts.append(actual)
            folder = folder / actual
        return str(PurePosixPath(*parts))

    def resolve_ticket(self, base: Path, ticket: Ticket, label: str) -> Ticket:
        """`ticket` with every name replaced by the on-disk spelling; a note for each one matched by NFC."""
        mapping = {name: self.resolve(base, name, label) for name in ticket.files}
        if all(k == v for k, v in mapping.items()):
            return ticket
        pairs = tuple(Pair(mapping[p.audio], mapping[p.video], p.output) for p in ticket.pairs)
        notes = tuple(f"'{printable(k)}' matched the file '{printable(v)}' (same name, different Unicode "
                      "form: macOS writes names decomposed)" for k, v in mapping.items() if k != v)
        return replace(ticket, pairs=pairs, notes=ticket.notes + notes)
