"""Tiny test media generated on the fly with ffmpeg lavfi, espeak-ng/sox and skimage's astronaut."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

FF = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def ff(*args: str | Path) -> None:
    subprocess.run([*FF, *map(str, args)], check=True, timeout=120, stdin=subprocess.DEVNULL)


def clip(path: Path, *, seconds: float = 2.0, fps: str = "25", size: str = "160x120", audio: bool = True,
         vcodec: tuple[str, ...] = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"),
         acodec: tuple[str, ...] = ("-c:a", "aac"), ar: int = 48000, channels: int = 1,
         extra: tuple[str, ...] = (), vf: str = "") -> Path:
    """A testsrc2 clip (frame counter visible) with an optional sine tone."""
    args: list[str | Path] = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={ar}:duration={seconds}",
                 "-filter:a", f"aformat=channel_layouts={layout}"]
    if vf:
        args += ["-vf", vf]
    args += [*vcodec, *((*acodec, "-ar", str(ar)) if audio else ("-an",)), *extra, path]
    ff(*args)
    return path


def tone(path: Path, seconds: float, *, ar: int = 48000, channels: int = 1,
         codec: tuple[str, ...] = ("-c:a", "pcm_s16le")) -> Path:
    layout = {1: "mono", 2: "stereo", 6: "5.1"}[channels]
    ff("-f", "lavfi", "-i", f"sine=frequency=300:sample_rate={ar}:duration={seconds}",
       "-filter:a", f"aformat=channel_layouts={layout}", *codec, "-ar", str(ar), path)
    return path


def astronaut_png(path: Path) -> Path:
    from skimage import data
    from skimage.io import imsave

    imsave(str(path), data.astronaut(), check_contrast=False)
    return path


def astronaut_clip(path: Path, seconds: float = 2.0, fps: int = 25, size: int = 256,
                   audio: Path | None = None, preset: str = "ultrafast") -> Path:
    """The astronaut portrait, gently moving (zoompan), as a short H.264 clip (ultrafast: no B-frames;
    veryfast: x264's B-frames, as most producers' files have)."""
    png = astronaut_png(path.with_suffix(".png"))
    n = int(round(seconds * fps))
    args: list[str | Path] = ["-loop", "1", "-framerate", str(fps), "-i", png]
    if audio is not None:
        args += ["-i", audio, "-map", "0:v", "-map", "1:a", "-c:a", "aac"]
    ff(*args, "-vf", f"zoompan=z='1.02+0.02*sin(2*PI*on/50)':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)'"
       f":d=1:s={size}x{size}:fps={fps},format=yuv420p", "-frames:v", str(n), "-c:v", "libx264",
       "-preset", preset, "-crf", "12", path)
    return path


def speech(path: Path, text: str = "Hello there. This is a short test of the lip sync appliance.",
           pad: float = 0.4) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path), "pad", str(pad), str(pad),
                    "norm", "-3"],
                   check=True, timeout=60)
    raw.unlink()
    return path


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-print_format", "json", "-show_format",
                          "-show_streams", str(path)], check=True, timeout=60, capture_output=True)
    return json.loads(out.stdout)


def ffprobe_packets(path: Path) -> list[dict]:
    """The first video stream's packets, in file (decode) order, with their flags."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
                          "-of", "json", str(path)], check=True, timeout=60, capture_output=True).stdout
    return list(json.loads(out).get("packets", []))


def stream(info: dict, kind: str) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == kind)


def decode_gray(path: Path, w: int, h: int) -> np.ndarray:
    """All frames of a (small) file as (N, h, w) uint8 luma."""
    out = subprocess.run([*FF, "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"], check=True,
                         timeout=120, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w)


def decode_rgb(path: Path, w: int, h: int) -> np.ndarray:
    out = subprocess.run([*FF, "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True,
                         timeout=120, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)
