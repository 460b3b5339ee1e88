"""Engine names → loaded engines. The worker calls `load_engine` once and keeps the engine resident."""

from __future__ import annotations

from collections.abc import Callable

from daemon.core.config import ENGINES, Config
from daemon.core.errors import ConfigError
from daemon.worker.engines.base import Engine


def _warp(config: Config) -> Engine:
    from daemon.worker.engines.warp import WarpEngine

    return WarpEngine(strength=config.engines.warp.strength)


def _copy(config: Config) -> Engine:
    from daemon.worker.engines.copy import CopyEngine

    return CopyEngine()


def _wav2lip(config: Config) -> Engine:
    from daemon.worker.engines.frames import pick_device
    from daemon.worker.engines.wav2lip import Wav2LipEngine

    return Wav2LipEngine(config.engines.wav2lip, pick_device())  # ConfigError names a bad checkpoint


def _factories(builders: dict[str, Callable[[Config], Engine]]) -> dict[str, Callable[[Config], Engine]]:
    """`builders` in `ENGINES` order; an engine name without a factory, or the reverse, is a bug."""
    if set(builders) != set(ENGINES):
        raise RuntimeError(f"engine factories {sorted(builders)} disagree with config's ENGINES {list(ENGINES)}")
    return {name: builders[name] for name in ENGINES}


# Each factory imports its engine lazily, so a worker pays only for the engine it runs.
FACTORIES = _factories({"warp": _warp, "wav2lip": _wav2lip, "copy": _copy})


def load_engine(name: str, config: Config) -> Engine:
    """Build the engine `name`; ConfigError when this build does not have it."""
    factory = FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"worker.engine = {name!r}: this build has engines {', '.join(sorted(FACTORIES))}")
    return factory(config)
