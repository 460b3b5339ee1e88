"""Builds the worker's renderers: one chunked pipeline per engine, engines loaded once and kept resident.

The configured default engine is loaded at start, so a missing or wrong checkpoint stops the worker
with a ConfigError (exit 78, no restart loop). An engine a ticket asks for is loaded on first use; if it
cannot be loaded, that job fails with the reason and the worker carries on.
"""

from __future__ import annotations

import os
from typing import Any

from daemon.core import logs
from daemon.core.config import Config
from daemon.core.errors import ConfigError, JobRejected
from daemon.core.share import Share
from daemon.worker.render import Renderer, RenderRequest


class Renderers:
    """The worker's `renderer_for`: the renderer of an engine by name, loaded on first use."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.internal = Share(config.root).internal
        self._loaded: dict[str, Renderer] = {}

    def preload(self, name: str) -> None:
        self._load(name)

    def __call__(self, name: str) -> Renderer:
        try:
            return self._load(name)
        except ConfigError as exc:
            raise JobRejected("engine_unavailable", engine=name, detail=str(exc)) from None

    def _load(self, name: str) -> Renderer:
        if name not in self._loaded:
            from daemon.worker.engines.registry import load_engine
            from daemon.worker.pipeline import ChunkedRenderer

            self._loaded[name] = _JobScoped(ChunkedRenderer(self.config, self.internal,
                                                            load_engine(name, self.config)))
        return self._loaded[name]


class _JobScoped:
    """A renderer whose log records, from any of its threads (face pass, read-ahead), carry the job id."""

    def __init__(self, inner: Renderer) -> None:
        self.inner = inner

    def render(self, request: RenderRequest, *args: Any, **kwargs: Any) -> Any:
        with logs.job(request.job_id):
            return self.inner.render(request, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def pin_gpu(gpu: str | None) -> None:
    """Make `--gpu N` (an index in PCI bus order, as nvidia-smi numbers them, or a GPU-UUID) the only
    device this process sees. Must run before CUDA is initialised; a unit's own setting wins."""
    if not gpu:
        return
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", gpu)

