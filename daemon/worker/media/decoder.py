"""Frames of the presenter, normalised inline and streamed as yuv420p over a pipe into caller buffers.

One ffmpeg child decodes forward from a source position; the filter graph makes every input look the
same (constant rate, upright, even size, 8-bit 4:2:0). Backward runs (ping-pong loops) are decoded
forward in blocks from a seek point and flipped in memory, so memory stays one block whatever the length.
A decoder that ends early is checked against the expected count (shortfall.py): a truncated faststart
MP4 exits 0.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault, JobRejected
from daemon.worker.media import boxes, process
from daemon.worker.media import commandline as cl
from daemon.worker.media.commandline import Filter, chain_text
from daemon.worker.media.cores import split
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import STILL_FORMAT, MediaInfo
from daemon.worker.media.shortfall import cut_off, tolerance

log = logging.getLogger(__name__)

REVERSE_BLOCK = 64  # frames decoded forward, then flipped, per backward step


@functools.lru_cache(maxsize=8)
def has_filter(ffmpeg: str, name: str) -> bool:
    """Whether this ffmpeg build has a filter (the slim static build lacks bwdif, zscale...)."""
    done = process.run([ffmpeg, "-hide_banner", "-nostdin", "-filters"], 30, capture_stdout=True)
    return any(line.split()[1:2] == [name] for line in done.stdout.decode("utf-8", "replace").splitlines())


@dataclass(frozen=True)
class Sampling:
    """Which frames a decoder writes and how: every Nth, at what size and pixel format, deinterlaced or
    not. The renderer's is the plan's (`rendered`); the face pass asks for small samples of its own."""

    every: int
    width: int
    height: int
    pix_fmt: str  # "yuv420p" to render; "gray" | "rgb24" for a detector
    deinterlace: bool = False
    nonref: bool = False  # non-reference frames may go undecoded, a neighbour standing in (skips_nonref)

    @classmethod
    def rendered(cls, plan: Plan) -> Sampling:
        """Every frame at the plan's size, yuv420p, deinterlaced where the plan says so."""
        return cls(1, plan.width, plan.height, "yuv420p", plan.deinterlace)


def filters(plan: Plan, ffmpeg: str, sampling: Sampling | None = None) -> list[Filter]:
    """The normalising chain: deinterlace, constant rate, the ticket's crop, [every Nth frame], output
    size, pixel format; `sampling` (default: the plan's own) decides deinterlacing and the last three."""
    frames = sampling or Sampling.rendered(plan)
    steps = []
    if frames.deinterlace:
        if has_filter(ffmpeg, "bwdif"):
            steps.append(Filter("bwdif"))
        else:
            log.warning("interlaced input but this ffmpeg has no bwdif filter: decoding without deinterlace")
    if not plan.still:
        steps.append(Filter("fps", (plan.fps_text,)))
    # autorotation (ffmpeg's default) runs before this graph, so W×H and the crop are in upright
    # display pixels; the crop comes before the scale like upstream's --crop (after --resize_factor
    # there, but a crop of the scaled frame is the same region scaled)
    if plan.crop is not None:
        x, y, w, h = plan.crop
        steps.append(Filter("crop", (w, h, x, y), {"exact": 1}))
    if frames.every > 1:
        # select counts frames from the seek point, so a seek to a multiple of `every` keeps sample k at
        # frame k·every. After fps (indices are output frames), before scale: the other frames are never
        # scaled (measured: 6.3 → 4.8 s for 60 s of 1080p at face_every 5 on the 2-core dev box)
        steps.append(Filter("select", (f"not(mod(n,{frames.every}))",)))  # ffmpeg-python escapes the comma
    steps += [Filter("scale", (frames.width, frames.height), {"flags": "bicubic"}), Filter("setsar", (1,)),
              Filter("format", (frames.pix_fmt,))]
    return steps


def filter_graph(plan: Plan, ffmpeg: str) -> str:
    """The chain, readable (for logs and tests; the command line's copy is escaped by ffmpeg-python)."""
    return chain_text(filters(plan, ffmpeg))


# codecs whose decoders skip non-reference frames (skip_frame) and still decode every other frame right
NONREF_CODECS = ("h264", "hevc")


def skips_nonref(cfg: MediaConfig, info: MediaInfo) -> bool:
    """Whether a decoder whose sampling allows it (the face pass's, never the rendered frames') leaves
    non-reference frames undecoded (`skip_frame noref`): when media.face_skip_nonref is on and the
    video has B-frames. The fps filter then repeats the nearest decoded frame in their
    place, so a sample shows its own frame or one next to it (measured on x264's defaults: 30-40 % less
    decoder CPU, bench/RESULTS.md, issue 15 sixth round); counts and seeks are unchanged. A stream
    without B-frames may have non-reference P-frames next to each other: never skipped."""
    video = info.video
    return (cfg.face_skip_nonref and not info.is_still and video is not None
            and video.codec in NONREF_CODECS and video.reorder > 0)


def decode_argv(cfg: MediaConfig, info: MediaInfo, plan: Plan, src_start: int, count: int,
                sampling: Sampling | None = None, threads: int = 0) -> list[str]:
    """ffmpeg writing `count` raw frames on stdout: source frames src_start, src_start+every, ... (every
    frame at the plan's size unless `sampling` says otherwise), decoded on `threads` (0: ffmpeg's count)."""
    sampling = sampling or Sampling.rendered(plan)
    ffmpeg = process.resolve(cfg.ffmpeg)
    options: dict[str, object] = {"protocol_whitelist": "file"}
    if threads:
        options["threads"] = threads
    if sampling.nonref and skips_nonref(cfg, info):
        options["skip_frame"] = "noref"
    if src_start:
        options["ss"] = f"{src_start * plan.fps_den / plan.fps_num:.6f}"
    if info.is_still:
        options.update(format_whitelist=STILL_FORMAT, format=STILL_FORMAT, pattern_type="none")
    else:
        options["format_whitelist"] = ",".join(cfg.video_formats)
    index = info.video.index if info.video else 0
    chain = filters(plan, ffmpeg, sampling)
    video = cl.apply(cl.source("file:" + str(info.path), index, **options), chain)
    out = cl.output(video, "pipe:1", {"an": None, "sn": None, "dn": None, "fps_mode": "passthrough",
                                      "frames:v": count, "f": "rawvideo", "pix_fmt": sampling.pix_fmt})
    return cl.argv(ffmpeg, out)


def read_frames(child: process.Child, out: np.ndarray) -> int:
    """Fill the C-contiguous `out` from the child's stdout; returns the bytes read (fewer at EOF)."""
    return child.read_into(out.data.cast("B"))


class _Stream:
    """One decoder child reading forward from source frame `pos`."""

    def __init__(self, cfg: MediaConfig, info: MediaInfo, plan: Plan, pos: int) -> None:
        self.pos = pos
        self.ended = False
        argv = decode_argv(cfg, info, plan, pos, plan.source_frames - pos, threads=split(cfg).decoder_threads)
        self.child = process.Child(argv, stdout=True, pipe_size=cfg.pipe_bytes, name="ffmpeg-decode",
                                   box=boxes.for_decoder(cfg, info, plan))
        self.child.__enter__()

    def read(self, out: np.ndarray) -> int:
        """Fill out[0..] (rows of frame_bytes) with the next frames; returns whole frames read."""
        got = read_frames(self.child, out)
        self.ended = got < out.nbytes
        frames: int = got // out.shape[1]
        self.pos += frames
        return frames

    def kill(self) -> None:
        self.child.kill()

    def close(self) -> None:
        # we may stop reading before EOF: the child then dies of a broken pipe, which is expected
        self.child.close(force=not self.ended)


class FrameSource:
    """Serves output frames by plan; call `read(start, count, buf)` with increasing starts."""

    def __init__(self, cfg: MediaConfig, info: MediaInfo, plan: Plan) -> None:
        self.cfg, self.info, self.plan = cfg, info, plan
        self._stream: _Stream | None = None
        self._still: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._halted = threading.Event()
        self.tolerance = tolerance(plan)

    def read(self, start: int, count: int, out: np.ndarray) -> None:
        for run in self.plan.runs(start, start + count):
            dst = out[run.out_start - start: run.out_start - start + run.count]
            if self.plan.still:
                dst[:] = self._still_frame()
            elif run.reverse:
                self._read_backward(run.src_start, dst)
            else:
                self._read_forward(run.src_start, dst)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def halt(self) -> None:
        """From another thread: end a read in progress (its decoder is killed) and refuse new ones."""
        self._halted.set()
        stream = self._stream
        if stream is not None:
            stream.kill()

    def _still_frame(self) -> np.ndarray:
        if self._still is None:
            frame = np.empty((1, self.plan.frame_bytes), np.uint8)
            stream = _Stream(self.cfg, self.info, self.plan, 0)
            try:
                if stream.read(frame) != 1:
                    raise JobRejected("media_unreadable", name=self.info.path.name,
                                      detail="the picture cannot be decoded")
            finally:
                stream.close()
            self._still = frame[0]
        return self._still

    def _read_forward(self, src: int, dst: np.ndarray) -> None:
        if self._stream is None or self._stream.pos != src:
            self.close()
            if self._halted.is_set():
                raise EnvironmentFault("decoding was halted")  # only the halting thread is left to care
            self._stream = _Stream(self.cfg, self.info, self.plan, src)
        got = self._stream.read(dst)
        if got < len(dst):
            self._short(src + got, dst, got)
        self._last = dst[len(dst) - 1].copy()

    def _read_backward(self, src_high: int, dst: np.ndarray) -> None:
        done = 0
        while done < len(dst):
            n = min(REVERSE_BLOCK, len(dst) - done)
            low = src_high - done - n + 1
            block = np.empty((n, self.plan.frame_bytes), np.uint8)
            self._read_forward(low, block)
            dst[done:done + n] = block[::-1]
            done += n

    def _short(self, reached: int, dst: np.ndarray, got: int) -> None:
        """The decoder ended at source frame `reached`: pad a small shortfall, reject a truncated file."""
        expected = self.plan.source_frames
        stream = self._stream
        self.close()
        if reached >= expected - self.tolerance and (got or self._last is not None):
            fill = dst[got - 1] if got else self._last
            dst[got:] = fill
            log.info("%s: decoder ended at frame %d of ~%d; holding the last frame", self.info.path.name,
                     reached, expected)
            return
        tail = stream.child.stderr_tail().strip().splitlines()[-1:] if stream else []
        log.warning("%s: decoded %d of %d frames; ffmpeg said: %s", self.info.path.name, reached, expected,
                    tail)
        cut_off(self.info, reached, expected)


def read_model_audio(cfg: MediaConfig, info: MediaInfo, dest: Path, timeout_s: float) -> tuple[int, int]:
    """Decode the speech track to a float32 16 kHz mono WAV at `dest`: (sample count, data offset).

    WAV rather than raw f32le because the slim static ffmpeg has no raw audio muxers.

    Decoding stops just past the duration limit, so a header that understates the length cannot make
    us write hours of samples; the caller rejects anything over the limit by the decoded count.
    """
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        longest = cfg.max_duration_min * 60 + 1
        sound_box = boxes.for_sound(cfg, info, min(info.duration or longest, longest), dest.parent,
                                  64000 * math.ceil(longest) + 65536)
        done = process.run(speech_argv(cfg, info, tmp), timeout_s, box=sound_box)
    except process.ChildTimeout:
        raise JobRejected("media_unreadable", name=info.path.name,
                          detail="decoding its sound took too long") from None
    if done.returncode != 0:
        last = done.stderr_tail.strip().splitlines()[-1:] or ["unknown error"]
        raise JobRejected("media_unreadable", name=info.path.name, detail=f"its sound cannot be decoded "
                          f"({last[0][:160]})")
    tmp.replace(dest)
    offset, size = wav_data(dest)
    return size // 4, offset


def speech_argv(cfg: MediaConfig, info: MediaInfo, dest: Path) -> list[str]:
    """ffmpeg writing the first audio stream as a float32 16 kHz mono WAV at `dest` (overwritten)."""
    formats = ",".join(sorted(set(cfg.audio_formats) | set(cfg.video_formats)))
    sound = cl.source("file:" + str(info.path), "a:0", protocol_whitelist="file", format_whitelist=formats)
    out = cl.output(sound, "file:" + str(dest), {
        "vn": None, "sn": None, "dn": None, "ac": 1, "ar": 16000, "t": f"{cfg.max_duration_min * 60 + 1:.3f}",
        "c:a": "pcm_f32le", "fflags": "+bitexact", "f": "wav"})
    return cl.argv(process.resolve(cfg.ffmpeg), out, head=(*cl.QUIET, "-y"))


def wav_data(path: Path) -> tuple[int, int]:
    """(offset, byte length) of the sample data in a WAV file we wrote ourselves."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    pos = 12  # after "RIFF" <size> "WAVE"
    while pos + 8 <= len(head):
        tag, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if tag == b"data":
            return pos + 8, min(size, path.stat().st_size - pos - 8)
        pos += 8 + size + (size & 1)
    raise EnvironmentFault(f"{path}: no data chunk in the decoded speech WAV")
