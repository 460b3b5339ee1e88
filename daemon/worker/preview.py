"""preview.jpg beside a job's result: a strip of frames cropped around the mouth (where the face pass
found a face), else the first frame with its face box; for a job failed with "no face found", the
frames that were analysed. Producers look at it on STATUS.html instead of opening the video.

The ffmpeg command lines are built with ffmpeg-python (compiled to argv, never its run helpers) and
run by our own process code; the picture is written under a temporary name and renamed. A preview is
decoration: a failure to make one is logged and never fails or delays a job.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault, JobRejected
from daemon.worker.media import process

log = logging.getLogger(__name__)

PREVIEW = "preview.jpg"
TILES = 4
TILE = 160  # pixels, square mouth crops
WIDE = 480  # width of a single-frame preview
FACE_ENGINES = ("warp", "wav2lip")  # engines that change faces; "copy" passes frames through by design
# a preview is decoration: these end the attempt at one, never the job
_NOT_FATAL = (OSError, ValueError, process.ChildTimeout, EnvironmentFault)


@dataclass(frozen=True)
class Frames:
    """What the renderer's stats say about the frames: counts, rate and size of the result."""

    frames: int
    source_frames: int
    fps: float
    width: int
    height: int

    @classmethod
    def of(cls, stats: dict[str, Any]) -> Frames:
        return cls(int(stats.get("frames") or 0), int(stats.get("source_frames") or 0),
                   float(stats.get("fps") or 25.0), int(stats.get("width") or 0), int(stats.get("height") or 0))


def require_a_face(job_dir: Path, engine: str, video: Path, stats: dict[str, Any], media: MediaConfig,
                   output: Path) -> None:
    """A face-driven engine that found no face in any frame made no lip-sync at all: fail the job (the
    producer's video), with the analysed frames as its preview; `output`, unchanged frames, is discarded."""
    frames = Frames.of(stats)
    if engine not in FACE_ENGINES or frames.frames <= 0 or stats.get("faces_missing") != frames.frames:
        return
    output.unlink(missing_ok=True)
    times: list[float | None] = [frames.source_frames / frames.fps * (i + 0.5) / TILES for i in range(TILES)]
    if frames.source_frames <= 1:
        times = [None]  # a still: its one picture
    try:
        _write(job_dir, _strip_argv(media.ffmpeg, video, times), "the analysed frames")
    except _NOT_FATAL as exc:  # the reason stands without its picture
        log.warning("%s: no preview.jpg of the analysed frames (%s)", _job_id(job_dir), exc)
    raise JobRejected("no_face", name=video.name)


def write_done(job_dir: Path, result: Path, video: Path, stats: dict[str, Any], facecache: Path,
               media: MediaConfig) -> None:
    """preview.jpg for a published result; logged, never raised."""
    frames = Frames.of(stats)
    try:
        boxes = _cached_boxes(facecache, video)
        picks = _picks(boxes, min(frames.frames, frames.source_frames or frames.frames))
        if picks and boxes is not None:
            argv = _mouths_argv(media.ffmpeg, result, frames, [(i, boxes[i]) for i in picks])
        else:
            first = boxes[0] if boxes is not None and len(boxes) and boxes[0][0] >= 0 else None
            argv = _first_frame_argv(media.ffmpeg, result, first)
        _write(job_dir, argv, "the result's frames")
    except _NOT_FATAL as exc:
        log.warning("%s: no preview.jpg (%s)", _job_id(job_dir), exc)


def _job_id(job_dir: Path) -> str:
    return job_dir.name.split("@", 1)[0]


def _cached_boxes(facecache: Path, video: Path) -> np.ndarray | None:
    """The face pass's boxes for `video` (output pixels, -1 rows: no face), newest cache entry first."""
    from daemon.worker.faces.cache import content_hash

    key = content_hash(video)
    entries = sorted(facecache.glob(f"{key}-*.npy"), key=lambda p: p.stat().st_mtime, reverse=True)
    return np.load(entries[0]) if entries else None


def _picks(boxes: np.ndarray | None, frames: int) -> list[int]:
    """Up to TILES frame indices with a face, spread over the result's first pass through its source."""
    if boxes is None or frames <= 1:
        return []
    present = np.flatnonzero(boxes[:frames, 0] >= 0)
    if len(present) < TILES:
        return []
    return [int(present[int(len(present) * (k + 0.5) / TILES)]) for k in range(TILES)]


def _input(path: Path, at: float | None) -> Any:
    kwargs: dict[str, Any] = {"protocol_whitelist": "file"}  # our own files, read as files only
    if at is not None:
        kwargs["ss"] = f"{at:.3f}"
    return ffmpeg.input(f"file:{path.resolve()}", **kwargs).video


def _mouths_argv(tool: str, result: Path, frames: Frames, picks: list[tuple[int, np.ndarray]]) -> list[str]:
    tiles = []
    for index, (x1, y1, x2, y2) in picks:
        side = max(8, int(0.8 * (x2 - x1)))
        cx, cy = (x1 + x2) / 2, y1 + 0.72 * (y2 - y1)  # the mouth sits about three quarters down the box
        side = min(side, frames.width or side, frames.height or side)
        x = int(min(max(0, cx - side / 2), max(0, (frames.width or side) - side)))
        y = int(min(max(0, cy - side / 2), max(0, (frames.height or side) - side)))
        at = (index + 0.25) / frames.fps  # inside frame `index`'s display interval
        tiles.append(_input(result, at).filter("crop", side, side, x, y).filter("scale", TILE, TILE))
    return _compile(tool, ffmpeg.filter(tiles, "hstack", inputs=len(tiles)))


def _first_frame_argv(tool: str, result: Path, box: np.ndarray | None) -> list[str]:
    stream = _input(result, None)
    if box is not None:
        x1, y1, x2, y2 = (int(v) for v in box)
        stream = stream.filter("drawbox", x1, y1, x2 - x1, y2 - y1, color="lime@0.9", t=3)
    return _compile(tool, stream.filter("scale", WIDE, -2))


def _strip_argv(tool: str, video: Path, times: list[float | None]) -> list[str]:
    tiles = [_input(video, at).filter("scale", -2, TILE * 3 // 2).filter("setsar", 1) for at in times]
    return _compile(tool, tiles[0] if len(tiles) == 1 else ffmpeg.filter(tiles, "hstack", inputs=len(tiles)))


def _compile(tool: str, stream: Any) -> list[str]:
    argv = stream.output("{out}", vframes=1, **{"q:v": 5, "f": "mjpeg"}).compile(cmd=process.resolve(tool))
    # global options first, where ffmpeg expects them (ffmpeg-python appends its own at the end)
    return [argv[0], "-nostdin", "-hide_banner", "-v", "error", "-y", *argv[1:]]


def _write(job_dir: Path, argv: list[str], what: str) -> None:
    tmp = job_dir / f".{PREVIEW}.{os.getpid()}.tmp"
    argv = [str(tmp) if a == "{out}" else a for a in argv]
    done = process.run(argv, 60)
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise ValueError(f"ffmpeg could not make a picture of {what}: {done.stderr_tail.strip()[-200:]}")
    os.replace(tmp, job_dir / PREVIEW)
