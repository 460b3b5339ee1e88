"""The command's stdout, whose write errors belong to the reader, not to the share or to us.

`lipsyncd status --json | head` closes the pipe early (EPIPE) and `> /dev/full` refuses the write
(ENOSPC): neither is a bug nor "the share is full". `guard()` wraps sys.stdout so such an error surfaces
as `OutputError`, which `cli.main` turns into a quiet exit (EPIPE) or one plain line (anything else).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Any, TextIO

EXIT_IOERR = 74  # sysexits EX_IOERR: an error while doing I/O on a file (here: our stdout)
EXIT_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool that a closed pipe ended (`yes | head`)


class OutputError(Exception):
    """Writing to stdout failed; `cause` is the OSError the reader's side gave us."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.strerror or str(cause))
        self.cause = cause

    @property
    def broken_pipe(self) -> bool:
        return self.cause.errno == errno.EPIPE


class _Guarded:
    """sys.stdout with every write and flush error re-raised as OutputError; the rest is delegated."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise OutputError(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(exc) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard() -> None:
    """Route this process's stdout writes through the guard (idempotent)."""
    if not isinstance(sys.stdout, _Guarded) and sys.stdout is not None:
        sys.stdout = _Guarded(sys.stdout)


def finish() -> None:
    """Flush what is still buffered while errors can still be told apart (not at interpreter exit)."""
    if sys.stdout is not None:
        sys.stdout.flush()


def handle(exc: OutputError) -> int:
    """The exit status for a failed stdout; EPIPE is silent, anything else is one line on stderr."""
    # whatever is left in the buffer can never be written: point fd 1 at /dev/null so the interpreter's
    # own flush at exit does not print "Exception ignored ... BrokenPipeError"
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        os.close(devnull)
    except OSError:
        pass
    if exc.broken_pipe:
        return EXIT_PIPE
    print(f"lipsyncd: cannot write to standard output: {exc.cause.strerror or exc.cause} "
          "(the file or device the output goes to, not the share)", file=sys.stderr)
    return EXIT_IOERR
