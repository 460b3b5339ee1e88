"""`doctor`'s checks of what renders: ffmpeg/ffprobe with the codecs and filters our command lines use,
GPUs through NVML, and the wav2lip checkpoints. Each returns its PASS text or raises Fail/Skip."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.core.config import Config
from daemon.verdicts import Fail, Skip

# what the worker's ffmpeg command lines need (daemon/worker/media/*): keep in step
ENCODERS = ("libx264", "aac", "pcm_s16le", "pcm_f32le")
DECODERS = ("h264", "hevc", "mpeg4", "aac", "mp3", "pcm_s16le", "png", "mjpeg")
# crop: a ticket's crop; select: the face pass's sampling
FILTERS = ("scale", "format", "fps", "setsar", "aresample", "crop", "select")
GPU_MIN_FREE = 1e9  # wav2lip in fp16 with a chunk of frames needs about this much GPU memory
_CODEC_LINE = re.compile(r"^\s*[VASDFXB.]{6}\s+(\S+)")
_FILTER_LINE = re.compile(r"^\s*[TSC.]{3}\s+(\S+)\s+\S+->\S+")


def _run_tool(tool: str, *argv: str) -> str:
    from daemon.worker.media import process

    done = process.run([process.resolve(tool), *argv], 30, capture_stdout=True)
    if done.returncode != 0:
        raise Fail(f"`{tool} {' '.join(argv)}` exited {done.returncode}: {done.stderr_tail.strip()[-200:]}")
    return done.stdout.decode("utf-8", "replace")


def tool(config: Config, name: str) -> str:
    tool = config.media.ffmpeg if name == "ffmpeg" else config.media.ffprobe
    first = _run_tool(tool, "-hide_banner", "-version").splitlines()[:1]
    from daemon.worker.media import process

    return f"{process.resolve(tool)}: {first[0] if first else 'version unknown'}"


def codecs(config: Config) -> str:
    tool = config.media.ffmpeg
    found = {"encoders": _names(_run_tool(tool, "-hide_banner", "-encoders"), _CODEC_LINE),
             "decoders": _names(_run_tool(tool, "-hide_banner", "-decoders"), _CODEC_LINE),
             "filters": _names(_run_tool(tool, "-hide_banner", "-filters"), _FILTER_LINE)}
    wanted = {"encoders": ENCODERS, "decoders": DECODERS, "filters": FILTERS}
    missing = {kind: [n for n in names if n not in found[kind]] for kind, names in wanted.items()}
    if any(missing.values()):
        what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in missing.items() if names)
        raise Fail(f"{tool} lacks {what}; install a full ffmpeg build (Debian/Ubuntu: apt-get install ffmpeg)")
    return (f"encoders {', '.join(ENCODERS)}; decoders {', '.join(DECODERS)}; filters {', '.join(FILTERS)}: "
            "all present")


def _names(listing: str, pattern: re.Pattern[str]) -> set[str]:
    return {m.group(1) for line in listing.splitlines() if (m := pattern.match(line))}


def gpu(config: Config) -> str:
    engine = config.worker.engine
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no library, no driver, no device: all mean "no GPU"
        if engine == "wav2lip":
            raise Fail(f"no GPU visible through NVML ({type(exc).__name__}); worker.engine = wav2lip would run "
                       "on the CPU, many times slower than real time: fix the NVIDIA driver") from None
        raise Skip(f"no GPU visible through NVML; not needed: worker.engine = {engine} runs on the CPU "
                   "(wav2lip needs a GPU for speed)") from None
    try:
        lines, low = [], []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            lines.append(f"#{i} {name} {mem.free / 1e9:.1f} GB free of {mem.total / 1e9:.1f} GB")
            if mem.free < GPU_MIN_FREE:
                low.append(f"#{i}")
    finally:
        pynvml.nvmlShutdown()
    if not lines:
        raise Skip("NVML works but sees no GPU")
    if low and engine == "wav2lip":
        raise Fail(f"{'; '.join(lines)}: GPU {', '.join(low)} has less than {GPU_MIN_FREE / 1e9:g} GB free; "
                   "another process holds its memory")
    return "; ".join(lines)


def checkpoint(config: Config, key: str) -> str:
    """engines.wav2lip.`key` (the model, or the S3FD face detector) loads as that kind of checkpoint."""
    path = getattr(config.engines.wav2lip, key)
    needed = config.worker.engine == "wav2lip" and key == "checkpoint"
    if not path:
        if needed:
            raise Fail(f"worker.engine = wav2lip but engines.wav2lip.{key} is empty: set it to the official "
                       "Wav2Lip checkpoint (.pth)")
        raise Skip(f"engines.wav2lip.{key} is empty")
    if not Path(path).is_file():
        raise Fail(f"engines.wav2lip.{key} = {path}: no such file")
    from daemon.worker.engines.wav2lip import check_checkpoint, check_detector  # torch: only when needed

    ok, detail = (check_checkpoint if key == "checkpoint" else check_detector)(path)
    if not ok:
        raise Fail(str(detail))
    return str(detail)


def media_box(config: Config) -> str:
    """Which box media children get on this host; an explicit media.sandbox that cannot work here fails,
    "auto" reports what it found."""
    from daemon.worker.media import box

    return box.describe(config.media.sandbox, config.media.ffmpeg)
