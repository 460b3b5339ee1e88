"""Engines declare what they can do: one list of names, and the optional FaceTracking protocol."""

from __future__ import annotations

import pytest

from daemon.core.config import ENGINES, load_config
from daemon.worker.engines import registry
from daemon.worker.engines.base import FaceTracking, face_tracking


def test_the_registry_has_a_factory_for_every_configured_engine_name_and_no_other() -> None:
    assert tuple(registry.FACTORIES) == ENGINES


def test_a_factory_list_that_disagrees_with_the_names_is_refused() -> None:
    with pytest.raises(RuntimeError, match="disagree"):
        registry._factories({"warp": registry._warp, "copy": registry._copy})
    with pytest.raises(RuntimeError, match="disagree"):
        registry._factories({**registry.FACTORIES, "extra": registry._copy})


def test_only_wav2lip_brings_its_own_face_tracking() -> None:
    from daemon.worker.engines.copy import CopyEngine
    from daemon.worker.engines.warp import WarpEngine
    from daemon.worker.engines.wav2lip import Wav2LipEngine

    assert issubclass(Wav2LipEngine, FaceTracking)
    assert not issubclass(CopyEngine, FaceTracking) and not issubclass(WarpEngine, FaceTracking)
    config = load_config(env={})
    for name in ("copy", "warp"):
        assert face_tracking(registry.load_engine(name, config)) is None
