"""Benchmark inputs: a presenter (the astronaut portrait with camera-like noise) and a speech-like tone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FFMPEG = os.environ.get("FFMPEG", "ffmpeg")


def ff(*args: str | Path, timeout: float = 3600) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, timeout=timeout, stdin=subprocess.DEVNULL)


def make(path: Path, *args: str | Path) -> Path:
    """ffmpeg ARGS into `path` via a temporary name, so a failed run leaves nothing to be reused."""
    tmp = path.with_name(f".tmp.{path.name}")
    ff(*args, "-f", {".wav": "wav"}.get(path.suffix, "mp4"), tmp)
    tmp.replace(path)
    return path


def portrait_png(path: Path) -> Path:
    if not path.exists():
        from skimage import data
        from skimage.io import imsave

        imsave(str(path), data.astronaut(), check_contrast=False)
    return path


def presenter(path: Path, height: int, seconds: float, fps: int = 25) -> Path:
    """The astronaut centred on a 16:9 canvas, gently zooming and panning (a talking-head-like shot).

    Only filters of the slim static ffmpeg (scale, zoompan, pad, format) so the GPU box can build it too.
    """
    if path.exists():
        return path
    png = portrait_png(path.parent / "astronaut.png")
    width = height * 16 // 9
    zoom = (f"zoompan=z='1.05+0.03*sin(2*PI*on/100)':x='iw/2-(iw/zoom/2)+8*sin(2*PI*on/75)'"
            f":y='ih/2-(ih/zoom/2)+6*sin(2*PI*on/90)':d=1:s={height}x{height}:fps={fps}")
    return make(path, "-loop", "1", "-framerate", str(fps), "-i", png,
       "-vf", f"scale={2 * height}:{2 * height},{zoom},pad={width}:{height}:(ow-iw)/2:0,format=yuv420p",
       "-frames:v", str(round(seconds * fps)), "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
       "-g", "50", "-movflags", "+faststart")


def repeated(src: Path, times: int, path: Path) -> Path:
    """`times` copies of `src` back to back, stream-copied (seconds, not an encode)."""
    if path.exists():
        return path
    listing = path.with_suffix(".txt")
    listing.write_text("".join(f"file '{src.name}'\n" for _ in range(times)))
    return make(path, "-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", "-movflags", "+faststart")


def speechlike(path: Path, seconds: float) -> Path:
    """A 220 Hz voice-band tone whose loudness rises and falls ~3 times a second, with pauses."""
    if path.exists():
        return path
    # sine + per-frame volume + aformat: all in the slim build (aevalsrc needs a pcm_f64le decoder it lacks)
    gain = "0.7*abs(sin(2*PI*1.5*t))*gt(sin(2*PI*0.2*t)\\,-0.6)"
    return make(path, "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=16000:duration={seconds},"
                f"volume='{gain}':eval=frame,aformat=sample_fmts=s16", "-c:a", "pcm_s16le")
