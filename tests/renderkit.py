"""Running the chunked renderer in tests and checking a result's sync the way a player would see it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mediagen as g

from daemon.core.config import Config, MediaConfig
from daemon.worker.engines.base import Engine
from daemon.worker.engines.copy import CopyEngine
from daemon.worker.pipeline import ChunkedRenderer
from daemon.worker.render import Progress, RenderRequest


@dataclass
class Result:
    path: Path
    stats: dict[str, Any]
    progress: list[Progress]
    video: dict[str, Any]
    audio: dict[str, Any]
    format: dict[str, Any]


def config(**media: Any) -> Config:
    return Config(media=replace(MediaConfig(), **media))


def render(tmp: Path, audio: Path, video: Path, *, engine: Engine | None = None, options: dict | None = None,
           cfg: Config | None = None, should_stop=lambda: False, workdir: Path | None = None,
           on_progress=None) -> Result:  # type: ignore[no-untyped-def]
    cfg = cfg or config()
    out = tmp / "result.mp4.tmp"
    seen: list[Progress] = []
    renderer = ChunkedRenderer(cfg, tmp / ".lipsyncd", engine or CopyEngine())
    request = RenderRequest(job_id="job1", attempt=1, audio=audio, video=video, output=out,
                            workdir=workdir or tmp / "work", engine="copy", options=options or {})
    def progress(news: Progress) -> None:
        seen.append(news)
        if on_progress is not None:
            on_progress(news)

    stats = renderer.render(request, progress, should_stop)
    info = g.ffprobe(out)
    return Result(out, stats, seen, g.stream(info, "video"), g.stream(info, "audio"), info["format"])


def audio_seconds(path: Path) -> float:
    info = g.ffprobe(path)
    return float(g.stream(info, "audio").get("duration") or info["format"]["duration"])


def assert_in_sync(result: Result, audio_s: float, fps: float) -> None:
    """frames = round(audio × fps) ± 1, audio = input ± 1 frame, video spans the audio with no gaps."""
    frames = int(result.video["nb_read_packets"])
    assert abs(frames - round(audio_s * fps)) <= 1, (frames, audio_s, fps)
    assert abs(float(result.audio["duration"]) - audio_s) <= 1 / fps, (result.audio["duration"], audio_s)
    assert abs(float(result.video["duration"]) - frames / fps) <= 0.5 / fps, result.video["duration"]
    assert result.video["codec_name"] == "h264" and result.video["pix_fmt"] == "yuv420p"
    assert result.video["width"] % 2 == 0 and result.video["height"] % 2 == 0
    assert result.audio["codec_name"] == "aac" and result.audio["sample_rate"] == "48000"
    head = result.path.read_bytes()
    assert head.find(b"moov") < head.find(b"mdat"), "not faststart"
