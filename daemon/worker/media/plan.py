"""The render plan of one job: output geometry and rate (a ticket's crop and fixed face box included),
frame count, chunks, and the source frame map.

The last chunk is cut in `tail_pieces` (one per encoder child by default): every chunk is its own
x264 child, so the job's last frames are then encoded side by side instead of by one child alone after
everything else is done (0.7-1.9 s of a 60 s job on the GPU box, bench/RESULTS.md, issue 15).

Output length is the audio's, always: frames = round(audio seconds × fps). When the video is shorter
it loops (ping-pong or wrap); when longer it is trimmed. The plan is pure arithmetic on probe results,
so a resumed attempt rebuilds exactly the same plan and chunk boundaries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from daemon.core import messages
from daemon.core.config import MediaConfig
from daemon.core.errors import JobRejected
from daemon.worker.media.probe import MediaInfo

messages.register({
    "region_outside": {
        "en": ("The ticket's {key} = {value} lies outside the {size} picture of {name}.",
               "Give {key} as [top, bottom, left, right] in pixels of the video as a player shows it, "
               "and drop the ticket again."),
        "zh": ("任务单中的 {key} = {value} 超出了 {name} 的 {size} 画面。",
               "请按播放器显示的画面像素写 {key} = [上, 下, 左, 右]，然后重新放入任务单。"),
    },
})


MIN_PIECE = 25  # frames: a piece of the last chunk costs an encoder start; shorter ones gain nothing
# frames a decoder reads after one seek at least (whole chunks): a seek decodes from the keyframe before
# it, and x264's default GOP is 250 frames, so short chunks read in turns would decode much twice
DECODE_BLOCK = 250


@dataclass(frozen=True)
class Run:
    """Output frames [out_start, out_start+count) show source frames src_start.. (backwards if reverse)."""

    out_start: int
    src_start: int  # first source frame shown (the highest one when reverse)
    count: int
    reverse: bool


@dataclass(frozen=True)
class Plan:
    fps_num: int
    fps_den: int
    width: int
    height: int
    frames: int  # output frames = round(audio_s × fps)
    source_frames: int  # frames the normalised source yields at the output rate (1 for a still)
    chunk_frames: int
    loop: str  # "pingpong" | "wrap"
    audio_s: float
    still: bool
    deinterlace: bool
    # the ticket's `crop`: x, y, w, h in upright source pixels; the output is this region (upstream --crop)
    crop: tuple[int, int, int, int] | None = None
    # the ticket's `face_box` in output pixels (x1, y1, x2, y2): every frame's face, no detection
    face_box: tuple[int, int, int, int] | None = None
    tail_pieces: int = 1  # the last chunk_frames-chunk is cut in up to this many chunks (MIN_PIECE each)

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den

    @property
    def fps_text(self) -> str:
        return f"{self.fps_num}/{self.fps_den}"

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 3 // 2  # yuv420p

    @property
    def chunks(self) -> int:
        return self._body + self._pieces

    def chunk_range(self, i: int) -> tuple[int, int]:
        """Output frames [start, end) of chunk i: chunk_frames each, the last one cut in pieces."""
        if i < self._body:
            start = i * self.chunk_frames
            return start, start + self.chunk_frames
        first, n, k = self._body * self.chunk_frames, self.frames - self._body * self.chunk_frames, i - self._body
        return first + n * k // self._pieces, first + n * (k + 1) // self._pieces

    @property
    def pieces(self) -> int:
        """Chunks the last chunk_frames-chunk is cut in (1: kept whole)."""
        return self._pieces

    def whole(self, i: int) -> bool:
        """Chunk i is chunk_frames long (not a piece of the last one)."""
        return i < self._body

    @property
    def block_frames(self) -> int:
        """Frames per decoder block: the whole chunks of at least DECODE_BLOCK frames."""
        return self.chunk_frames * -(-DECODE_BLOCK // self.chunk_frames)

    def block(self, i: int) -> int:
        """Which block of `block_frames` chunk i starts in (the decoders take turns by block; the last
        chunk's pieces lie in one)."""
        return self.chunk_range(i)[0] // self.block_frames

    @property
    def _body(self) -> int:  # whole chunks before the last one
        return -(-self.frames // self.chunk_frames) - 1

    @property
    def _pieces(self) -> int:
        last = self.frames - self._body * self.chunk_frames
        return max(1, min(self.tail_pieces, last // MIN_PIECE))

    def source_index(self, j: int) -> int:
        m = self.source_frames
        if j < m:
            return j
        if self.loop == "wrap" or m < 2:
            return j % m
        k = j % (2 * m - 2)
        return k if k < m else 2 * m - 2 - k

    def source_indices(self, start: int, end: int) -> np.ndarray:
        """source_index(j) for j in [start, end), vectorised."""
        j = np.arange(start, end, dtype=np.int64)
        m = self.source_frames
        if self.loop == "wrap" or m < 2:
            return np.where(j < m, j, j % m)
        k = j % (2 * m - 2)
        return np.where(j < m, j, np.where(k < m, k, 2 * m - 2 - k))

    def runs(self, start: int, end: int) -> list[Run]:
        """Split output frames [start, end) into runs of consecutive source frames."""
        out: list[Run] = []
        j = start
        while j < end:
            s = self.source_index(j)
            step = 1
            if j + 1 < end:
                step = self.source_index(j + 1) - s
            reverse = step == -1
            n = 1
            while j + n < end and self.source_index(j + n) == s + (n * (-1 if reverse else 1)):
                n += 1
            out.append(Run(j, s, n, reverse))
            j += n
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def output_rate(video: MediaInfo, cfg: MediaConfig, engine_fps: float | None,
                forced: float | None = None) -> Fraction:
    """The engine's rate if it needs one, else the ticket's `fps`, else config's, else the source's
    (VFR sources and stills → media.vfr_fps, 25 by default like upstream's --fps for images)."""
    if engine_fps:
        return Fraction(engine_fps).limit_denominator(1001)
    if forced:
        return Fraction(forced).limit_denominator(1001)
    if cfg.fps:
        return Fraction(cfg.fps).limit_denominator(1001)
    v = video.video
    if v is None or video.is_still or v.vfr or not v.r_fps:
        return Fraction(cfg.vfr_fps).limit_denominator(1001)
    return Fraction(v.r_fps).limit_denominator(1001)


def output_size(video: MediaInfo, cfg: MediaConfig, max_height: int | None,
                crop: tuple[int, int, int, int] | None = None) -> tuple[int, int]:
    """Display size (rotation applied) or the crop's, capped in height, both sides even (x264 needs it)."""
    assert video.video is not None
    w, h = (video.video.width, video.video.height) if crop is None else crop[2:]
    caps = [c for c in (cfg.max_height, max_height or 0) if c > 0]
    if caps and h > min(caps):
        w, h = round(w * min(caps) / h), min(caps)
    return max(2, w - w % 2), max(2, h - h % 2)


def make_plan(video: MediaInfo, audio_s: float, cfg: MediaConfig, engine_fps: float | None,
              options: dict[str, Any], tail_pieces: int = 1) -> Plan:
    rate = output_rate(video, cfg, engine_fps, _number_option(options, "fps"))
    crop = crop_region(video, options.get("crop"))
    width, height = output_size(video, cfg, _int_option(options, "max_height"), crop)
    frames = max(1, round(audio_s * rate))
    if video.is_still:
        source = 1
    else:
        assert video.video is not None
        dur = video.video.duration or video.duration or 0.0
        source = max(1, round(dur * rate))
    loop = str(options.get("loop") or cfg.loop)
    if loop not in ("pingpong", "wrap"):
        loop = cfg.loop
    return Plan(fps_num=rate.numerator, fps_den=rate.denominator, width=width, height=height,
                frames=frames, source_frames=source, chunk_frames=cfg.chunk_frames, loop=loop,
                audio_s=audio_s, still=video.is_still,
                deinterlace=bool(video.video and video.video.interlaced), crop=crop,
                face_box=fixed_box(video, options.get("face_box"), crop, (width, height)),
                tail_pieces=max(1, tail_pieces))


def _int_option(options: dict[str, Any], key: str) -> int | None:
    value = options.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 \
        else None


def _number_option(options: dict[str, Any], key: str) -> float | None:
    value = options.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 \
        else None


def crop_region(video: MediaInfo, crop: object) -> tuple[int, int, int, int] | None:
    """A ticket's crop [top, bottom, left, right] (-1: to the edge) → (x, y, w, h) inside the picture,
    even-sized; None for no crop or one that covers the whole picture. A crop outside it is the
    producer's mistake."""
    if not isinstance(crop, (list, tuple)) or len(crop) != 4:
        return None
    assert video.video is not None
    width, height = video.video.width, video.video.height
    top, bottom, left, right = (int(v) for v in crop)
    bottom = height if bottom == -1 else min(bottom, height)
    right = width if right == -1 else min(right, width)
    w, h = (right - left) & ~1, (bottom - top) & ~1
    if w < 2 or h < 2:
        raise JobRejected("region_outside", key="crop", value=str(list(crop)), name=video.path.name,
                          size=f"{width}x{height}")
    if (left, top, w, h) == (0, 0, width & ~1, height & ~1):
        return None
    return left, top, w, h


def fixed_box(video: MediaInfo, box: object, crop: tuple[int, int, int, int] | None,
              size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """A ticket's face_box [top, bottom, left, right] in pixels of the (cropped) picture → x1, y1, x2, y2
    in output pixels (scaled like the frames; upstream's --box is in the resized frame's pixels)."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return None
    assert video.video is not None
    region_w, region_h = (video.video.width, video.video.height) if crop is None else crop[2:]
    top, bottom, left, right = (int(v) for v in box)
    if right > region_w or bottom > region_h:
        raise JobRejected("region_outside", key="face_box", value=str(list(box)), name=video.path.name,
                          size=f"{region_w}x{region_h}" + (" (cropped)" if crop else ""))
    sx, sy = size[0] / region_w, size[1] / region_h
    x1, y1 = int(left * sx), int(top * sy)
    return x1, y1, max(x1 + 1, round(right * sx)), max(y1 + 1, round(bottom * sy))
