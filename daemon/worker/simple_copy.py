"""The `copy` diagnostic renderer: the presenter video looped or trimmed to the speech, with the speech.

One ffmpeg process; progress comes from `-progress pipe:1`, where we also check for a stop request.
It exercises the whole appliance (claims, publication, recovery) without any model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from daemon.core.config import MediaConfig
from daemon.core.errors import JobRejected
from daemon.worker.media import process
from daemon.worker.render import Interrupted, Progress, ProgressFn, RenderRequest, StopFn

IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe")
STILL_FPS = 25


class CopyRenderer:
    def __init__(self, media: MediaConfig) -> None:
        self.media = media

    def render(self, request: RenderRequest, progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        audio = self._probe(request.audio, "audio")
        video = self._probe(request.video, "video")
        duration = float(audio["format"].get("duration") or 0)
        if duration <= 0:
            raise JobRejected("media_invalid", name=request.audio.name, detail="it has no measurable length")
        if duration > self.media.max_duration_min * 60:
            raise JobRejected("media_invalid", name=request.audio.name,
                              detail=f"it lasts {duration / 60:.1f} minutes; the limit is "
                                     f"{self.media.max_duration_min:g} minutes")
        still = video["format"].get("format_name", "") in IMAGE_FORMATS
        loop = ["-loop", "1", "-framerate", str(STILL_FPS)] if still else ["-stream_loop", "-1"]
        argv = [process.resolve(self.media.ffmpeg), "-nostdin", "-hide_banner", "-y", "-v", "error",
                "-protocol_whitelist", "file,pipe", *loop, "-i", f"file:{request.video.resolve()}",
                "-protocol_whitelist", "file,pipe", "-i", f"file:{request.audio.resolve()}",
                "-map", "0:v:0", "-map", "1:a:0", "-t", f"{duration:.6f}",
                "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p",
                "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-ar", "48000",
                "-movflags", "+faststart", "-f", "mp4", "-progress", "pipe:1", f"file:{request.output}"]
        started = time.monotonic()
        with process.Child(argv, stdout=True, name="ffmpeg-copy") as child:
            self._follow(child, duration, progress, should_stop, started)
            code = child.wait(timeout=duration * self.media.timeout_factor + 60)
            if code != 0:
                fault = process.write_fault(child.stderr_tail(), request.output)
                if fault is not None:
                    raise fault
                raise JobRejected("media_invalid", name=request.video.name,
                                  detail=f"it could not be decoded ({_last_line(child.stderr_tail())})")
        return {"engine": "copy", "duration_s": round(duration, 3), "render_s": round(time.monotonic() - started, 3)}

    def _follow(self, child: process.Child, duration: float, progress: ProgressFn, should_stop: StopFn,
                started: float) -> None:
        for raw in child.stdout:
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            if key != "out_time_us" or not value.isdigit():
                continue
            if should_stop():
                child.close(force=True)
                raise Interrupted()
            done_s = int(value) / 1e6
            elapsed = time.monotonic() - started
            speed = done_s / elapsed if elapsed > 0 else 0.0
            eta = (duration - done_s) / speed if speed > 0 else None
            progress(Progress(phase="render", chunk=0, chunks=1, fps=0.0, eta_s=eta,
                              frames_done=int(done_s * STILL_FPS), frames_total=int(duration * STILL_FPS)))

    def _probe(self, path: Path, role: str) -> dict[str, Any]:
        argv = [process.resolve(self.media.ffprobe), "-v", "error", "-protocol_whitelist", "file",
                "-show_format", "-show_streams", "-of", "json", f"file:{path.resolve()}"]
        done = process.run(argv, self.media.probe_timeout_s, capture_stdout=True)
        if done.returncode != 0:
            raise JobRejected("media_invalid", name=path.name,
                              detail=f"it is not a readable media file ({_last_line(done.stderr_tail)})")
        info: dict[str, Any] = json.loads(done.stdout or b"{}")
        kinds = [s.get("codec_type") for s in info.get("streams", [])]
        if role not in kinds:
            detail = "it has no sound track" if role == "audio" else "it has no picture"
            raise JobRejected("media_invalid", name=path.name, detail=detail)
        return info


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no details"
