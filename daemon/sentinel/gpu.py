"""GPU health through NVML (pynvml), optional: without a driver or the library the check is simply off.

Reads device count, and per device memory used/total; an NVML error after a good start means a GPU
was lost (fell off the bus, driver reset).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    used: int
    total: int

    @property
    def used_pct(self) -> float:
        return 100.0 * self.used / self.total if self.total else 0.0


class GpuLost(Exception):
    """NVML answered with an error, or fewer GPUs than at start-up."""


class NvmlProbe:
    def __init__(self) -> None:
        self.nvml: Any = None
        self.expected = 0
        try:
            import pynvml  # optional: absent library or driver must not stop the watchdog

            pynvml.nvmlInit()
            self.expected = pynvml.nvmlDeviceGetCount()
            self.nvml = pynvml
        except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, ImportError, driver errors
            log.info("GPU checks off: NVML not usable here (%s)", exc)

    @property
    def available(self) -> bool:
        return self.nvml is not None

    def read(self) -> list[GpuReading]:
        if self.nvml is None:
            return []
        nv = self.nvml
        try:
            count = nv.nvmlDeviceGetCount()
            readings = []
            for index in range(count):
                handle = nv.nvmlDeviceGetHandleByIndex(index)
                mem = nv.nvmlDeviceGetMemoryInfo(handle)
                uuid = nv.nvmlDeviceGetUUID(handle)
                readings.append(GpuReading(index, uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                                           int(mem.used), int(mem.total)))
        except nv.NVMLError as exc:
            raise GpuLost(f"NVML error: {exc}") from None
        if count < self.expected:
            raise GpuLost(f"{count} GPU(s) visible, {self.expected} at start")
        return readings
