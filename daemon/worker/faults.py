"""Who is at fault when the worker's own file operations fail: the machine or the share, never the job."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from daemon.core.errors import EnvironmentFault, ShareUnreachable, is_out_of_space, is_unreachable


@contextlib.contextmanager
def disk_faults() -> Iterator[None]:
    """Our own writes refused for lack of space are the machine's fault, never the job's."""
    try:
        yield
    except OSError as exc:
        if is_out_of_space(exc):
            raise EnvironmentFault(f"disk full: {exc.strerror}: {exc.filename}") from exc
        raise


@contextlib.contextmanager
def share_faults() -> Iterator[None]:
    """An OSError that means "the share is not answering" is the environment's fault (exit 70)."""
    try:
        yield
    except OSError as exc:
        if is_unreachable(exc):
            raise ShareUnreachable(f"the share is unreachable: {exc.strerror}: {exc.filename}") from exc
        raise
