"""The output side: one x264 encoder child per attempt cutting one MP4 segment per chunk, then the mux.

Segments are the durable resume points (a segment is complete when it probes with exactly its chunk's
frame count). The speech track is encoded to AAC 48 kHz, cut at the audio's length, while the video
renders; the final step stream-copies segments and track with `+faststart`, as long as the audio.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

import numpy as np

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault
from daemon.worker.media import box, process
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo

log = logging.getLogger(__name__)

SEGMENT = "seg_{:05d}.mp4"
AUDIO_TRACK = "audio.m4a"
_QUIET = ["-nostdin", "-hide_banner", "-loglevel", "error", "-nostats"]


def segment_path(workdir: Path, chunk: int) -> Path:
    return workdir / SEGMENT.format(chunk)


def gop(chunk_frames: int, longest: int = 250) -> int:
    """Keyframe interval: the chunk itself, or its largest divisor up to `longest` frames (x264's
    default) when that still leaves GOPs of at least 50 frames."""
    if chunk_frames <= longest:
        return chunk_frames
    best = max(d for d in range(1, longest + 1) if chunk_frames % d == 0)
    return best if best >= 50 else chunk_frames


def encode_argv(cfg: MediaConfig, plan: Plan, workdir: Path, first_chunk: int) -> list[str]:
    start, _ = plan.chunk_range(first_chunk)
    remaining = plan.frames - start
    cuts = [str(n) for n in range(plan.chunk_frames, remaining, plan.chunk_frames)]
    keyint = gop(plan.chunk_frames)
    argv = [process.resolve(cfg.ffmpeg), *_QUIET, "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{plan.width}x{plan.height}",
            "-framerate", plan.fps_text, "-i", "pipe:0", "-map", "0:v",
            "-c:v", "libx264", "-preset", cfg.x264_preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p",
            # every chunk starts on a keyframe, so each segment decodes on its own: a fixed GOP that
            # divides the chunk (-force_key_frames did the same 12 % slower, bench/RESULTS.md)
            "-x264-params", f"keyint={keyint}:min-keyint={keyint}:scenecut=0",
            "-f", "segment", "-segment_format", "mp4", "-reset_timestamps", "1",
            "-segment_start_number", str(first_chunk)]
    if cuts:
        argv += ["-segment_frames", ",".join(cuts)]
    return [*argv, str(workdir / "seg_%05d.mp4")]


class SegmentEncoder:
    """Feeds yuv420p frames to one encoder child from a writer thread.

    Encoding a batch overlaps decoding and rendering the next one (they ran one after another before:
    the pipeline took 1.9× a plain transcode instead of ~1.3×, bench/RESULTS.md). The caller fills
    `buffer()`s and `submit()`s them; `finish()` drains the queue, then closes stdin so the last segment
    completes. Memory stays `buffers` batches, whatever the length: with the decode-ahead reader one is
    being decoded, one waits, one is rendered and one is encoded.
    """

    def __init__(self, cfg: MediaConfig, plan: Plan, workdir: Path, first_chunk: int, batch: int,
                 buffers: int = 4) -> None:
        self.plan = plan
        self.child = process.Child(encode_argv(cfg, plan, workdir, first_chunk), stdin=True,
                                   pipe_size=cfg.pipe_bytes, name="ffmpeg-encode",
                                   box=box.for_encoder(cfg, plan, workdir))
        self.child.__enter__()
        self.timeout_s = 60 + cfg.timeout_factor * plan.audio_s
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(buffers):
            self._free.put(np.empty((batch, plan.frame_bytes), np.uint8))
        self._todo: queue.Queue[np.ndarray | None] = queue.Queue()
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="ffmpeg-encode-writer", daemon=True)
        self._writer.start()

    def buffer(self, stop: threading.Event | None = None) -> np.ndarray | None:
        """A free (batch, frame_bytes) buffer to fill; waits while the others are queued or being
        written. None only once `stop` is set (a reader thread giving up)."""
        while stop is None or not stop.is_set():
            self._check()
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def submit(self, frames: np.ndarray) -> None:
        """Queue `frames` (a leading slice of a `buffer()`) for the encoder; the buffer comes back free."""
        self._check()
        self._todo.put(frames)

    def finish(self) -> None:
        """Drain, close stdin and wait: never terminate an encoder on the success path (moov)."""
        self._todo.put(None)
        self._writer.join()
        self._check()
        try:
            self.child.stdin.close()
        except BrokenPipeError:
            pass
        code = self.child.wait(self.timeout_s)
        if code != 0:
            raise EnvironmentFault(f"the encoder failed (exit {code}): {self._tail()}")

    def abort(self) -> None:
        self._todo.put(None)
        self.child.close(force=True)  # a writer blocked in write() gets a broken pipe and ends
        self._writer.join(timeout=10)

    def _write_loop(self) -> None:
        while (frames := self._todo.get()) is not None:
            try:
                if self._error is None:
                    self.child.stdin.write(frames.data.cast("B"))
            except BaseException as exc:  # handed to the caller's thread by _check()
                self._error = exc
            finally:
                self._free.put(frames if frames.base is None else frames.base)

    def _check(self) -> None:
        error = self._error
        if error is None:
            return
        if isinstance(error, (OSError, ValueError)):  # broken or closed pipe: the encoder died
            code = self.child.wait(10)
            raise EnvironmentFault(f"the encoder stopped (exit {code}): {self._tail()}") from None
        raise error

    def _tail(self) -> str:
        return " ".join(self.child.stderr_tail().strip().splitlines()[-2:])[:300]


def count_frames(cfg: MediaConfig, path: Path) -> int | None:
    """Video packets in one of our own files (index only, fast); None when it does not parse."""
    argv = [process.resolve(cfg.ffprobe), "-v", "error", "-protocol_whitelist", "file", "-format_whitelist",
            "mov", "-count_packets", "-select_streams", "v:0", "-show_entries", "stream=nb_read_packets",
            "-of", "csv=p=0", "file:" + str(path)]
    try:
        done = process.run(argv, cfg.probe_timeout_s, capture_stdout=True)
    except process.ChildTimeout:
        return None
    text = done.stdout.decode("ascii", "replace").strip().strip(",")
    return int(text) if done.returncode == 0 and text.isdigit() else None


class AudioTrack:
    """The result's AAC 48 kHz track, encoded from the speech file in the background while the video
    renders (encoding it in the mux took most of the mux's time); the mux then copies it."""

    def __init__(self, cfg: MediaConfig, plan: Plan, audio: MediaInfo, workdir: Path) -> None:
        self.path = workdir / AUDIO_TRACK
        self._tmp = workdir / (AUDIO_TRACK + ".tmp")
        self.timeout_s = 60 + cfg.timeout_factor * plan.audio_s / 4
        channels = min(2, audio.audio.channels) if audio.audio and audio.audio.channels else 2
        allowed = ",".join(sorted(set(cfg.audio_formats) | set(cfg.video_formats)))
        argv = [process.resolve(cfg.ffmpeg), *_QUIET, "-y", "-protocol_whitelist", "file",
                "-format_whitelist", allowed, "-i", "file:" + str(audio.path), "-map", "0:a:0", "-vn", "-sn",
                "-dn", "-c:a", "aac", "-b:a", f"{cfg.audio_bitrate_k}k", "-ar", "48000", "-ac", str(channels),
                "-t", f"{plan.audio_s:.6f}", "-f", "mp4", "file:" + str(self._tmp)]
        most = int(cfg.audio_bitrate_k * 125 * plan.audio_s * 2)  # twice the nominal bitrate
        self.child = process.Child(argv, name="ffmpeg-audio",
                                   box=box.for_sound(cfg, audio, plan.audio_s, workdir, most))
        self.child.__enter__()

    def wait(self) -> Path:
        """The finished track (raises EnvironmentFault if the encode failed: the file decoded before)."""
        try:
            code = self.child.wait(self.timeout_s)
        except process.ChildTimeout as exc:
            raise EnvironmentFault(f"encoding the sound of the result timed out: {exc}") from None
        if code != 0:
            tail = self.child.stderr_tail().strip()[-300:]
            raise EnvironmentFault(f"encoding the sound of the result failed (exit {code}): {tail}")
        self._tmp.replace(self.path)
        return self.path

    def close(self) -> None:
        self.child.close(force=True)


def mux(cfg: MediaConfig, plan: Plan, workdir: Path, audio: Path, output: Path) -> None:
    """Concatenate all segments and the finished AAC track (both stream copies) into `output`."""
    listing = workdir / "segments.txt"
    # explicit durations: the first segment of an encoder run starts at the B-frame delay, and without
    # them concat would open a gap of that delay at every resume point (audio drift)
    lines = []
    for i in range(plan.chunks):
        start, end = plan.chunk_range(i)
        seconds = (end - start) * plan.fps_den / plan.fps_num
        lines.append(f"file '{SEGMENT.format(i)}'\nduration {seconds:.6f}\n")
    listing.write_text("ffconcat version 1.0\n" + "".join(lines))
    argv = [process.resolve(cfg.ffmpeg), *_QUIET, "-y",
            "-protocol_whitelist", "file", "-format_whitelist", "concat,mov", "-f", "concat", "-safe", "1",
            "-i", "file:" + str(listing),
            "-protocol_whitelist", "file", "-format_whitelist", "mov", "-i", "file:" + str(audio),
            "-map", "0:v:0", "-map", "1:a:0", "-c", "copy",
            "-t", f"{plan.audio_s:.6f}", "-movflags", "+faststart", "-f", "mp4", "file:" + str(output)]
    try:
        parts = [segment_path(workdir, i) for i in range(plan.chunks)] + [audio]
        done = process.run(argv, 60 + cfg.timeout_factor * plan.audio_s / 4,
                           box=box.for_mux(cfg, plan, parts, workdir, output))
    except process.ChildTimeout as exc:
        raise EnvironmentFault(f"muxing the result timed out: {exc}") from None
    if done.returncode != 0:
        raise EnvironmentFault(f"muxing the result failed (exit {done.returncode}): "
                               f"{done.stderr_tail.strip()[-300:]}")
