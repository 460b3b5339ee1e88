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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
import numpy as np

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault, JobRejected
from daemon.worker.media import mp4index, process

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
        keyframes = mp4index.keyframes(result)
        picks = _picks(boxes, min(frames.frames, frames.source_frames or frames.frames), keyframes)
        if picks and boxes is not None:
            argv = _mouths_argv(media.ffmpeg, result, frames, [(i, boxes[i]) for i in picks], keyframes)
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


def _picks(boxes: np.ndarray | None, frames: int, keyframes: Sequence[int] | None = None) -> list[int]:
    """Up to TILES frame indices with a face, spread over the result's first pass through its source.

    Each is the keyframe with a face nearest to its place where the result has enough of them: a seek
    lands on a keyframe and decodes every frame from there to the one asked for, so mouths at the
    middle of GOPs cost about half a GOP of decoding each (four of them, 0.8 s of a 60 s 720p job on the
    2-core box against 0.17 s at keyframes, after its result was already made; bench/RESULTS.md, issue 15
    eighth round).
    """
    if boxes is None or frames <= 1:
        return []
    present = np.flatnonzero(boxes[:frames, 0] >= 0)
    if len(present) < TILES:
        return []
    places = [int(present[int(len(present) * (k + 0.5) / TILES)]) for k in range(TILES)]
    keyed = [k for k in keyframes or () if k < frames and boxes[k, 0] >= 0]
    if len(keyed) < TILES:
        return places
    picks: list[int] = []
    for place in places:  # the nearest keyframe not taken yet
        picks.append(min((k for k in keyed if k not in picks), key=lambda k: abs(k - place)))
    return sorted(picks)


def _input(path: Path, at: float | None, keyframe: bool = False) -> Any:
    """The video of `path` from `at` seconds on: the first frame shown at or after it (ffmpeg's accurate
    seek decodes from the keyframe before it), or with `keyframe`, the keyframe it lands on itself."""
    kwargs: dict[str, Any] = {"protocol_whitelist": "file"}  # our own files, read as files only
    if at is not None:
        kwargs["ss"] = f"{at:.3f}"
    if keyframe:
        kwargs["noaccurate_seek"] = None  # a flag: the seek's own frame, nothing decoded before it
    return ffmpeg.input(f"file:{path.resolve()}", **kwargs).video


def _mouths_argv(tool: str, result: Path, frames: Frames, picks: list[tuple[int, np.ndarray]],
                 keyframes: Sequence[int] | None = None) -> list[str]:
    keys = set(keyframes or ())
    tiles = []
    for index, (x1, y1, x2, y2) in picks:
        side = max(8, int(0.8 * (x2 - x1)))
        cx, cy = (x1 + x2) / 2, y1 + 0.72 * (y2 - y1)  # the mouth sits about three quarters down the box
        side = min(side, frames.width or side, frames.height or side)
        x = int(min(max(0, cx - side / 2), max(0, (frames.width or side) - side)))
        y = int(min(max(0, cy - side / 2), max(0, (frames.height or side) - side)))
        # a keyframe: a quarter frame into its interval, where the seek lands on it; any other frame:
        # half a frame before it, so that it is the first one shown at or after that time
        keyframe = index in keys
        at = (index + 0.25) / frames.fps if keyframe else max(0.0, (index - 0.5) / frames.fps)
        tiles.append(_input(result, at, keyframe).filter("crop", side, side, x, y).filter("scale", TILE, TILE))
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
