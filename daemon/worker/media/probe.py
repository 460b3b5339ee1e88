"""What an input file is: magic-byte sniffing, then a hardened ffprobe JSON preflight into `MediaInfo`.

ffprobe only ever sees `file:/absolute/path`, `-protocol_whitelist file` and a demuxer allowlist, so a
playlist (HLS/DASH/concat) disguised as a video is refused before any demuxer follows its URLs
(reference/media.md §4). Role checks (video vs audio, bounds) live in media/preflight.py.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from daemon.core import messages
from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault, JobRejected
from daemon.worker.media import box, process

messages.register({
    "media_playlist": {
        "en": ("The file {name} is a {kind} playlist (a text file that points to other files), "
               "not a video or audio file.",
               "Export the real media file (for example an MP4) and drop the job again."),
        "zh": ("文件 {name} 是 {kind} 播放列表（指向其他文件的文本），不是音视频文件。",
               "请导出真正的媒体文件（例如 MP4）后重新提交。"),
    },
    "media_unreadable": {
        "en": ("The file {name} cannot be read as video or audio: {detail}.",
               "Check that it plays on your computer, re-export or copy it again, then drop the job again."),
        "zh": ("文件 {name} 无法作为音视频读取：{detail}。",
               "请确认该文件能在电脑上正常播放，重新导出或重新复制后再提交。"),
    },
})

STILL_FORMAT = "image2"
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_SNIFF_BYTES = 4096


@dataclass(frozen=True)
class VideoInfo:
    index: int  # stream index in the file (for -map 0:N)
    codec: str
    width: int  # as displayed (already swapped for a ±90° rotation)
    height: int
    rotation: int  # display-matrix rotation as ffprobe reports it, mod 360; ffmpeg applies it on decode
    fps: float  # average rate (what plays); r_fps is the container's nominal rate
    r_fps: float
    vfr: bool
    pix_fmt: str
    interlaced: bool
    nb_frames: int | None
    duration: float | None
    reorder: int = 0  # ffprobe's has_b_frames: frames the decoder holds back to reorder (0: no B-frames)


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    sample_rate: int
    channels: int
    layout: str
    duration: float | None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    size: int
    duration: float | None  # seconds; None for a still image
    streams: int
    video: VideoInfo | None  # the first video stream that is not cover art
    audio: AudioInfo | None  # the first audio stream
    cover_art: bool  # an attached picture (album art) was present and ignored
    is_still: bool  # a single picture (PNG/JPEG): a static presenter

    @property
    def frame_estimate(self) -> int | None:
        if self.video is None:
            return None
        if self.is_still:
            return 1
        if self.video.nb_frames:
            return self.video.nb_frames
        dur = self.video.duration or self.duration
        return round(dur * self.video.fps) if dur else None


def sniff(path: Path) -> str:
    """'still' for PNG/JPEG, 'media' otherwise; raises JobRejected for empty files and playlists."""
    name = path.name
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head:
        raise JobRejected("file_empty", name=name)
    if head.startswith(_PNG) or head.startswith(_JPEG):
        return "still"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"#extm3u"):
        raise JobRejected("media_playlist", name=name, kind="HLS (m3u8)")
    if b"<mpd" in text:
        raise JobRejected("media_playlist", name=name, kind="DASH (mpd)")
    if text.startswith(b"ffconcat") or text.startswith(b"file "):
        raise JobRejected("media_playlist", name=name, kind="concat")
    return "media"


def probe_argv(cfg: MediaConfig, path: Path, still: bool) -> list[str]:
    """The ffprobe command line; every option that keeps untrusted bytes contained is here."""
    argv = [process.resolve(cfg.ffprobe), "-v", "error", "-hide_banner", "-protocol_whitelist", "file"]
    if still:
        # forced single-image demuxer: no probing, and no %d pattern expansion of the file name
        argv += ["-format_whitelist", STILL_FORMAT, "-f", STILL_FORMAT, "-pattern_type", "none"]
    else:
        allowed = sorted(set(cfg.video_formats) | set(cfg.audio_formats))
        argv += ["-format_whitelist", ",".join(allowed)]
    argv += ["-print_format", "json", "-show_format", "-show_streams", "-show_error",
             "file:" + str(path.resolve())]
    return argv


def probe(path: Path, cfg: MediaConfig) -> MediaInfo:
    """Probe one input file; raises JobRejected with a plain reason for anything unusable."""
    path = Path(os.path.abspath(path))
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise JobRejected("media_unreadable", name=path.name, detail="the file does not exist") from None
    limit = cfg.max_file_mb * 1024 * 1024
    if size > limit:
        raise JobRejected("file_too_large", name=path.name, size=_mb(size), limit=_mb(limit))
    still = sniff(path) == "still"
    try:
        done = process.run(probe_argv(cfg, path, still), cfg.probe_timeout_s, capture_stdout=True,
                           max_stdout=4 * 1024 * 1024,
                           box=box.for_probe(cfg, path))
    except process.ChildTimeout:
        raise JobRejected("media_unreadable", name=path.name,
                          detail=f"inspecting it took longer than {cfg.probe_timeout_s:.0f} s") from None
    data = _json(done.stdout)
    if done.returncode != 0 or "error" in data or "format" not in data:
        raise JobRejected("media_unreadable", name=path.name, detail=_why(data, done.stderr_tail))
    return _parse(path, data, size, still)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        raise EnvironmentFault("ffprobe printed something that is not JSON; check the ffprobe binary") \
            from None
    return data if isinstance(data, dict) else {}


def _why(data: dict[str, Any], stderr: str) -> str:
    """A plain reason from ffprobe's error, without paths or demuxer jargon."""
    low = stderr.lower()
    if "moov atom not found" in low:
        return "the file is incomplete (its index is missing: the copy or export stopped early)"
    if "not on whitelist" in low:
        return "its container format is not accepted (use MP4, MOV, MKV/WebM, WAV, MP3, AAC, FLAC or OGG)"
    if "invalid data found" in low:
        return "it is damaged or not a media file"
    text = str(data.get("error", {}).get("string", "")) or stderr.strip().splitlines()[-1:] or "unknown"
    return str(text).replace("\n", " ")[:200]


def _parse(path: Path, data: dict[str, Any], size: int, still: bool) -> MediaInfo:
    fmt = data.get("format", {})
    streams = data.get("streams", [])
    video = audio = None
    cover = False
    for s in streams:
        kind = s.get("codec_type")
        if kind == "video" and s.get("disposition", {}).get("attached_pic") == 1:
            cover = True  # album art in an audio file: not a picture track
        elif kind == "video" and video is None:
            video = _video(s)
        elif kind == "audio" and audio is None:
            audio = _audio(s)
    duration = None if still else _float(fmt.get("duration"))
    return MediaInfo(path=path, format_name=str(fmt.get("format_name", "")), size=size, duration=duration,
                     streams=len(streams), video=video, audio=audio, cover_art=cover, is_still=still)


def _video(s: dict[str, Any]) -> VideoInfo:
    rotation = _rotation(s)
    w, h = int(s.get("width") or 0), int(s.get("height") or 0)
    if rotation in (90, 270):
        w, h = h, w
    r_fps, avg = _rate(s.get("r_frame_rate")), _rate(s.get("avg_frame_rate"))
    fps = avg or r_fps
    field = str(s.get("field_order", "progressive"))
    return VideoInfo(index=int(s.get("index", 0)), codec=str(s.get("codec_name", "")), width=w, height=h,
                     rotation=rotation,
                     fps=float(fps), r_fps=float(r_fps or fps),
                     vfr=bool(avg and r_fps and abs(float(avg) - float(r_fps)) > 0.01 * float(r_fps)),
                     pix_fmt=str(s.get("pix_fmt", "")), interlaced=field in ("tt", "bb", "tb", "bt"),
                     nb_frames=_int(s.get("nb_frames")), duration=_float(s.get("duration")),
                     reorder=_int(s.get("has_b_frames")) or 0)


def _audio(s: dict[str, Any]) -> AudioInfo:
    return AudioInfo(codec=str(s.get("codec_name", "")), sample_rate=_int(s.get("sample_rate")) or 0,
                     channels=_int(s.get("channels")) or 0, layout=str(s.get("channel_layout", "")),
                     duration=_float(s.get("duration")))


def _rotation(s: dict[str, Any]) -> int:
    for side in s.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    rotate = s.get("tags", {}).get("rotate")
    return int(rotate) % 360 if rotate not in (None, "") else 0


def _rate(text: Any) -> Fraction:
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        return Fraction(0)
    return value if value > 0 else Fraction(0)


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out >= 0 else None  # NaN and negatives mean "unknown"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


def describe(path: Path, cfg: MediaConfig) -> str:
    """Human summary for `lipsyncd probe FILE`: what the appliance sees and what it would do."""
    info = probe(path, cfg)
    lines = [f"{info.path.name}: {info.format_name}, {info.size / 1e6:.1f} MB, {info.streams} stream(s)"]
    if info.is_still:
        lines.append("  still image: used as a static presenter")
    if info.duration is not None:
        lines.append(f"  duration {info.duration:.3f} s")
    v = info.video
    if v is not None:
        notes = [n for n, on in (("VFR → constant rate", v.vfr), ("interlaced → deinterlaced", v.interlaced),
                                 (f"rotated {v.rotation}° → upright", bool(v.rotation)),
                                 (f"{v.pix_fmt} → yuv420p", v.pix_fmt not in ("yuv420p", "yuvj420p")),
                                 ("odd size → even", v.width % 2 == 1 or v.height % 2 == 1)) if on]
        lines.append(f"  video {v.codec} {v.width}x{v.height} {v.fps:.3f} fps {v.pix_fmt}"
                     f" ~{info.frame_estimate} frames" + (f" ({'; '.join(notes)})" if notes else ""))
    a = info.audio
    if a is not None:
        lines.append(f"  audio {a.codec} {a.sample_rate} Hz {a.channels} ch {a.layout} → 16 kHz mono for "
                     "the model, AAC 48 kHz in the result")
    if info.cover_art:
        lines.append("  cover art: ignored")
    return "\n".join(lines)
