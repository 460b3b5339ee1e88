"""The output side: x264 encoder children, one MP4 segment per chunk and several at once, then the mux.

Segments are the durable resume points (a segment is complete when it probes with exactly its chunk's
frame count). The speech track is encoded to AAC 48 kHz, cut at the audio's length, while the video
renders; the final step stream-copies segments and track with `+faststart`, as long as the audio.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault
from daemon.worker.media import boxes, mp4index, process
from daemon.worker.media.lane import Lane
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


def encode_argv(cfg: MediaConfig, plan: Plan, workdir: Path, chunk: int, threads: int = 0) -> list[str]:
    """One x264 child for one chunk: raw yuv420p on stdin → workdir/seg_NNNNN.mp4."""
    keyint = gop(plan.chunk_frames)
    argv = [process.resolve(cfg.ffmpeg), *_QUIET, "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{plan.width}x{plan.height}",
            "-framerate", plan.fps_text, "-i", "pipe:0", "-map", "0:v",
            "-c:v", "libx264", "-preset", cfg.x264_preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p",
            # every chunk starts on a keyframe, so each segment decodes on its own: a fixed GOP that
            # divides the chunk (-force_key_frames did the same 12 % slower, bench/RESULTS.md)
            "-x264-params", f"keyint={keyint}:min-keyint={keyint}:scenecut=0"]
    if threads:
        argv += ["-threads", str(threads)]
    return [*argv, "-f", "mp4", "file:" + str(segment_path(workdir, chunk))]


class SegmentEncoder:
    """Encodes consecutive chunks with `media.encoders` x264 children side by side (plus the next
    chunk's, starting while the oldest finishes).

    One x264 is what bound the render loop (the reader waited 2.4–4.4 s per minute of video for it,
    bench/RESULTS.md), and its threads scale poorly past a few cores; every chunk is a closed-GOP segment
    of its own, so K children with a share of the cores each encode K chunks at once. The caller fills
    `buffer()`s and `submit()`s them in frame order (a batch never crosses a chunk's end); each chunk gets
    a lane at once, whose child starts when the lane K + 1 places before it is done (lane.py; the last
    chunk's pieces start at once), and each lane writes at its child's pace: a chunk whose encoder is
    busy or not started keeps its frames queued while the next chunk renders, and the buffer pool (about
    half a chunk per extra encoder, cores.py) is what the render loop waits for. `finish()` waits for
    every segment; a stop between chunks leaves only whole segments.
    """

    def __init__(self, cfg: MediaConfig, plan: Plan, workdir: Path, first_chunk: int, batch: int,
                 encoders: int = 1, threads: int = 0, extra_buffers: int = 0,
                 chunk_threads: Callable[[int, int], int] | None = None) -> None:
        self.cfg, self.plan, self.workdir = cfg, plan, workdir
        self.encoders, self.threads = max(1, encoders), threads
        self._chunk_threads = chunk_threads  # (chunk_frames, frames after the chunk) → threads; cores.Split
        self.chunk_timeout_s = 60 + cfg.timeout_factor * plan.chunk_frames * plan.fps_den / plan.fps_num
        self._next = first_chunk
        self._lanes: list[Lane] = []  # oldest first; the last one may still want frames
        self._turns: list[threading.Event] = []  # every lane's `finished`, in chunk order
        self.counted: dict[int, int | None] = {}  # chunk → frames its finished segment probes with
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        # extra_buffers: what more decoders beyond the first hold ahead (readahead.Interleaved.held)
        for _ in range(self.pool_size(plan.chunk_frames, batch, self.encoders) + extra_buffers):
            self._free.put(np.empty((batch, plan.frame_bytes), np.uint8))

    @staticmethod
    def pool_size(chunk_frames: int, batch: int, encoders: int) -> int:
        """Batches in memory: four for decode / wait / render / encode, plus half a chunk per extra lane
        (a lane takes its chunk at 1/K of the render rate, so on average half of it is still queued)."""
        return 4 + (encoders - 1) * -(-chunk_frames // (2 * batch))

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
        """Queue `frames` (a leading slice of a `buffer()`) for the chunk they belong to."""
        self._check()
        if not self._lanes or not self._lanes[-1].wants_frames:
            self._open_lane()
        self._lanes[-1].put(frames)

    def finish(self) -> None:
        """Wait for every lane; a chunk fed only in part (a stop mid-chunk) ends short and is redone."""
        for lane in self._lanes:
            lane.close_early()
        while self._lanes:
            self._join(self._lanes.pop(0))

    def abort(self) -> None:
        for lane in self._lanes:
            lane.abort()
        self._lanes.clear()

    def _open_lane(self) -> None:
        """The next chunk's lane, whose child starts once the lane K + 1 chunks back is done: the one just
        before it has all its frames by now and only finishes them, so the new child's start-up overlaps
        that tail (with K = 1, a stall at every chunk boundary otherwise)."""
        self._lanes = [lane for lane in self._lanes if not self._reaped(lane)]
        start, end = self.plan.chunk_range(self._next)
        argv = encode_argv(self.cfg, self.plan, self.workdir, self._next, self._threads(self._next, end))
        # the last chunk's pieces start as their frames come: they are the job's end, each child is short,
        # and waiting for turns left them to run one after another while cores idled (bench/RESULTS.md,
        # issue 15 fifth round); a last chunk kept whole waits like the rest
        piece = self.plan.pieces > 1 and not self.plan.whole(self._next)
        after = self._turns[-(self.encoders + 1)] if len(self._turns) > self.encoders and not piece else None
        segment = segment_path(self.workdir, self._next)
        lane = Lane(argv, self._next, end - start, self.cfg.pipe_bytes, self.chunk_timeout_s, self._free,
                    boxes.for_encoder(self.cfg, self.plan, self.workdir), after,
                    lambda: count_frames(self.cfg, segment))
        self._lanes.append(lane)
        self._turns = [*self._turns[-self.encoders:], lane.finished]
        self._next += 1

    def _threads(self, chunk: int, end: int) -> int:
        """Whole chunks may ramp up towards the end; the last chunk (in pieces or kept whole) keeps
        `threads`."""
        if self._chunk_threads is None or not self.plan.whole(chunk):
            return self.threads
        return self._chunk_threads(self.plan.chunk_frames, self.plan.frames - end)

    def _reaped(self, lane: Lane) -> bool:
        if lane.running:
            return False
        self._join(lane)
        return True

    def _join(self, lane: Lane) -> None:
        lane.join()  # raises if its segment failed
        self.counted[lane.chunk] = lane.counted

    def _check(self) -> None:
        for lane in self._lanes:
            lane.check()


def count_frames(cfg: MediaConfig, path: Path) -> int | None:
    """Video packets in one of our own files (index only, fast); None when it does not parse. Read from
    the MP4 index in-process (mp4index.py), ffprobe only for a file that index reader cannot read."""
    counted = mp4index.video_samples(path)
    return counted if counted is not None else _probe_frames(cfg, path)


def _probe_frames(cfg: MediaConfig, path: Path) -> int | None:
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
                                   box=boxes.for_sound(cfg, audio, plan.audio_s, workdir, most))
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
    # explicit durations: every segment (its own encoder run) starts at the B-frame delay, and without
    # them concat would open a gap of that delay at every segment boundary (audio drift)
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
                           box=boxes.for_mux(cfg, plan, parts, workdir, output))
    except process.ChildTimeout as exc:
        raise EnvironmentFault(f"muxing the result timed out: {exc}") from None
    if done.returncode != 0:
        raise EnvironmentFault(f"muxing the result failed (exit {done.returncode}): "
                               f"{done.stderr_tail.strip()[-300:]}")
