"""GPU out-of-memory recovery: run work in batches, halve the batch and retry the same range on OOM.

An OOM is a property of the batch size, not of the job, so it never fails a job by itself; only when
even a batch of one does not fit is the GPU declared unusable (EnvironmentFault → job requeued).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

from daemon.core.errors import EnvironmentFault

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def batched(fn: Callable[[int, int], T], total: int, size: int, what: str) -> tuple[list[T], int]:
    """fn(start, stop) over [0, total) in batches of `size`; returns the results and the size that fit."""
    results: list[T] = []
    start = 0
    while start < total:
        stop = min(total, start + size)
        try:
            results.append(fn(start, stop))
        except (RuntimeError, torch.OutOfMemoryError) as exc:
            if not is_oom(exc):
                raise
            release()
            if size == 1:
                raise EnvironmentFault(f"GPU out of memory in {what} even with a batch of 1") from exc
            size = max(1, size // 2)
            log.warning("GPU out of memory in %s: retrying with batch %d", what, size)
            continue  # same range again, smaller
        start = stop
    return results, size
