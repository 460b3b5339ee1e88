"""Builds the worker's renderers from the config, once per process (engines stay resident)."""

from __future__ import annotations

import argparse
import os
from functools import partial

from daemon.core.config import Config
from daemon.core.errors import ConfigError, JobRejected
from daemon.worker import role
from daemon.worker.render import Renderer
from daemon.worker.simple_copy import CopyRenderer


def renderers(config: Config) -> dict[str, Renderer]:
    return {"copy": CopyRenderer(config.media)}


def renderer_for(available: dict[str, Renderer], engine: str) -> Renderer:
    try:
        return available[engine]
    except KeyError:
        raise JobRejected("ticket_engine_not_allowed", ticket="job.json", engine=engine,
                          allowed=", ".join(sorted(available))) from None


def pin_gpu(gpu: str | None) -> None:
    """Make `--gpu N` (an index in PCI bus order, as nvidia-smi numbers them, or a GPU-UUID) the only
    device this process sees. Must run before CUDA is initialised; a unit's own setting wins."""
    if not gpu:
        return
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", gpu)


def run_worker(config: Config, args: argparse.Namespace) -> int:
    pin_gpu(args.gpu)
    available = renderers(config)
    if config.worker.engine not in available:
        raise ConfigError(f"worker.engine = {config.worker.engine!r} is not available in this build; "
                          f"available: {', '.join(sorted(available))}")
    return role.run(config, args, partial(renderer_for, available))
