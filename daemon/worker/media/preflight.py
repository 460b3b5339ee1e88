"""Role checks on probed inputs: is this usable as the presenter video, as the speech track?

Every refusal is a JobRejected with a producer-facing code; everything that can be normalised
(rotation, VFR, 10-bit, odd size, 96 kHz 5.1, cover art) passes and is handled by the decoder.
"""

from __future__ import annotations

from pathlib import Path

from daemon.core import messages
from daemon.core.config import MediaConfig
from daemon.core.errors import JobRejected
from daemon.worker.media.probe import MediaInfo, probe

messages.register({
    "media_no_video": {
        "en": ("The file {name}, given as the video, has no picture.",
               "Name a video file or a still image (PNG/JPEG) of the presenter as `video`."),
        "zh": ("作为 video 的文件 {name} 没有画面。",
               "请将主讲人的视频文件或静态图片（PNG/JPEG）写为 video。"),
    },
    "media_audio_as_video": {
        "en": ("The file {name}, given as the video, contains only sound.",
               "It looks like the speech track: name it as `audio`, and a video of the presenter as "
               "`video`."),
        "zh": ("作为 video 的文件 {name} 只有声音。",
               "它看起来是语音文件：请写为 audio，并把主讲人视频写为 video。"),
    },
    "media_no_audio": {
        "en": ("The file {name}, given as the audio, has no sound track.",
               "Name the speech recording (WAV, MP3, M4A… or a video with sound) as `audio`."),
        "zh": ("作为 audio 的文件 {name} 没有音轨。",
               "请将语音录音（WAV、MP3、M4A 等，或带声音的视频）写为 audio。"),
    },
    "media_too_short": {
        "en": ("The file {name} lasts {seconds} s; at least {minimum} s are needed.",
               "Use a longer recording."),
        "zh": ("文件 {name} 只有 {seconds} 秒，至少需要 {minimum} 秒。",
               "请使用更长的录音。"),
    },
    "media_too_long": {
        "en": ("The file {name} lasts {minutes} minutes; this appliance accepts at most {limit} minutes.",
               "Split it into parts of at most {limit} minutes and submit each part as its own job."),
        "zh": ("文件 {name} 时长 {minutes} 分钟，本设备最多接受 {limit} 分钟。",
               "请拆分为每段不超过 {limit} 分钟，分别提交。"),
    },
    "media_limits": {
        "en": ("The file {name} is outside what this appliance accepts: {what} is {value} "
               "(allowed: {limit}).",
               "Re-export it within the limit (for example 1080p, 25 or 30 fps) and submit again."),
        "zh": ("文件 {name} 超出本设备的处理范围：{what} 为 {value}（允许：{limit}）。",
               "请按限制重新导出（例如 1080p、25 或 30 帧/秒）后重新提交。"),
    },
})


def check_video(info: MediaInfo, cfg: MediaConfig) -> MediaInfo:
    """Accept `info` as the presenter (video or still) or raise JobRejected."""
    name = info.path.name
    v = info.video
    if v is None:
        raise JobRejected("media_audio_as_video" if info.audio else "media_no_video", name=name)
    if info.streams > cfg.max_streams:
        raise JobRejected("media_limits", name=name, what="the number of streams", value=info.streams,
                          limit=f"at most {cfg.max_streams}")
    for side in (v.width, v.height):
        if not cfg.min_dimension <= side <= cfg.max_dimension:
            raise JobRejected("media_limits", name=name, what="the picture size",
                              value=f"{v.width}x{v.height}",
                              limit=f"{cfg.min_dimension} to {cfg.max_dimension} pixels per side")
    if not info.is_still:
        if not 0 < v.fps <= cfg.max_fps:
            raise JobRejected("media_limits", name=name, what="the frame rate", value=f"{v.fps:.2f} fps",
                              limit=f"up to {cfg.max_fps:g} fps")
        _check_duration(info, cfg, minimum=1.0 / v.fps)
    return info


def check_audio(info: MediaInfo, cfg: MediaConfig) -> MediaInfo:
    """Accept `info` as the speech track (an audio file or a video with sound) or raise JobRejected."""
    if info.audio is None:
        raise JobRejected("media_no_audio", name=info.path.name)
    if info.streams > cfg.max_streams:
        raise JobRejected("media_limits", name=info.path.name, what="the number of streams",
                          value=info.streams, limit=f"at most {cfg.max_streams}")
    _check_duration(info, cfg, minimum=cfg.min_audio_s)
    return info


def check_decoded_audio(name: str, seconds: float, cfg: MediaConfig) -> None:
    """The decoded length is the truth (headers can lie): bound it once more after decoding."""
    if seconds < cfg.min_audio_s:
        raise JobRejected("media_too_short", name=name, seconds=f"{seconds:.2f}",
                          minimum=f"{cfg.min_audio_s:g}")
    if seconds > cfg.max_duration_min * 60:
        raise JobRejected("media_too_long", name=name, minutes=f"{seconds / 60:.1f}",
                          limit=f"{cfg.max_duration_min:g}")


def _check_duration(info: MediaInfo, cfg: MediaConfig, minimum: float) -> None:
    name = info.path.name
    dur = info.duration
    if dur is None and info.audio is not None:
        dur = info.audio.duration
    if dur is None:
        raise JobRejected("media_unreadable", name=name, detail="its duration cannot be determined")
    if dur < minimum:
        raise JobRejected("media_too_short", name=name, seconds=f"{dur:.2f}", minimum=f"{minimum:.2g}")
    if dur > cfg.max_duration_min * 60:
        raise JobRejected("media_too_long", name=name, minutes=f"{dur / 60:.1f}",
                          limit=f"{cfg.max_duration_min:g}")


def preflight(audio: Path, video: Path, cfg: MediaConfig) -> tuple[MediaInfo, MediaInfo]:
    """Probe and check both inputs of a job: (audio info, video info)."""
    return check_audio(probe(audio, cfg), cfg), check_video(probe(video, cfg), cfg)
