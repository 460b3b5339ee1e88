"""The box each media child of a job runs in, sized from what the job knows by then (its MediaInfo, its
Plan): the presenter's decoders, the speech decoder, the segment encoders and the final mux.

The probe's box (before anything is known) and how a box is built and judged live in box.py, below the
probe: this module sits above plan.py, so box.py never needs the probe's or the plan's types.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from daemon.core.config import MediaConfig
from daemon.worker.media.box import Box, MiB, media_box
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo


def for_decoder(cfg: MediaConfig, info: MediaInfo, plan: Plan) -> Box:
    """A decoder streaming the presenter's frames into a pipe: it writes no file."""
    source = info.video.width * info.video.height if info.video else 0
    return media_box(cfg, info.path.name, "decoder", pixels=max(source, plan.width * plan.height),
                     seconds=plan.source_frames * plan.fps_den / plan.fps_num, reads=(info.path,))


def for_sound(cfg: MediaConfig, info: MediaInfo, seconds: float, workdir: Path, file_bytes: int) -> Box:
    """A child decoding the speech track into a file of at most `file_bytes` in `workdir`."""
    return media_box(cfg, info.path.name, "decoder", pixels=0, seconds=seconds, file_bytes=file_bytes,
                     reads=(info.path,), writes=(workdir,))


def for_encoder(cfg: MediaConfig, plan: Plan, workdir: Path) -> Box:
    """The segment encoder: each segment at most twice its chunk's raw yuv420p size (even a lossless
    encode of noise stays near the raw size); it reads only our pipe. The mux's cap is the tight one."""
    segment = 2 * plan.frame_bytes * plan.chunk_frames + MiB
    return media_box(cfg, f"{workdir.parent.name} (its rendered video)", "encoder",
                     pixels=plan.width * plan.height, seconds=plan.audio_s, file_bytes=segment,
                     writes=(workdir,))


def for_mux(cfg: MediaConfig, plan: Plan, parts: Sequence[Path], workdir: Path, output: Path) -> Box:
    """The final mux: its result is the segments and the track copied, so that is its size cap."""
    expected = sum(p.stat().st_size for p in parts if p.exists())
    return media_box(cfg, f"{workdir.parent.name} (its result)", "encoder", pixels=0, seconds=plan.audio_s,
                     file_bytes=expected + expected // 50 + MiB, reads=(workdir,), outputs=(output,))
