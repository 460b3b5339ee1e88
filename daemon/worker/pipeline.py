"""The chunked renderer: probe → plan → speech features once → per chunk: decode, faces, engine, encode.

Decoding, rendering and encoding overlap (reader threads, this thread, a writer thread per encoder
child, several chunks encoding at once) and memory is a fixed pool of batches whatever the length
(decode pipe and encode pipes in between; the speech track is a memory map read in blocks). Each chunk
ends a durable segment, so a new attempt on the same workdir resumes from the last finished chunk and
muxes an identical-length result with the exact audio.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from daemon.core.config import Config
from daemon.worker.checkpoint import Checkpoint, fingerprint
from daemon.worker.engines import frames as yuv
from daemon.worker.engines.base import Chunk, Engine, face_tracking
from daemon.worker.faces import Boxes, FaceFinder, FixedBoxes
from daemon.worker.media import encoder as enc
from daemon.worker.media.cores import one_blas_thread, split
from daemon.worker.media.decoder import FrameSource, read_model_audio
from daemon.worker.media.plan import Plan, make_plan
from daemon.worker.media.preflight import check_decoded_audio, preflight
from daemon.worker.media.probe import MediaInfo
from daemon.worker.media.readahead import Interleaved
from daemon.worker.render import Interrupted, Progress, ProgressFn, RenderRequest, StopFn

log = logging.getLogger(__name__)

AUDIO16K = "audio16k.wav"
FIRST_BATCH = 16  # frames of the job's first batch (_batches)


@dataclass
class _Job:
    """Everything one render attempt knows once the inputs are probed and the plan is made."""

    request: RenderRequest
    audio: MediaInfo
    video: MediaInfo
    plan: Plan
    checkpoint: Checkpoint
    first: int  # first chunk this attempt renders (> 0: resumed)
    samples: int  # speech samples at 16 kHz in workdir/AUDIO16K, starting at byte `offset`
    offset: int
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    boxes: Boxes | FixedBoxes | None = None
    features: Any = None
    counted: dict[int, int | None] = field(default_factory=dict)  # chunk → frames, from its encoder


class ChunkedRenderer:
    """A `Renderer` (daemon/worker/render.py) around one resident engine."""

    def __init__(self, config: Config, internal_dir: Path, engine: Engine) -> None:
        self.config = config
        self.cfg = config.media
        self.engine = engine
        tracking = face_tracking(engine)  # wav2lip: S3FD for the face pass when its checkpoint is set
        self.faces = FaceFinder(config.media, internal_dir / "facecache",
                                tracking.sample_detector() if tracking else None)
        yuv.share_cpu()  # torch and numpy's BLAS on one thread each: their idle pools spin
        one_blas_thread()

    def render(self, request: RenderRequest, progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
        job = self._start(request, progress)
        plan = job.plan
        progress(Progress(phase="prepare", chunk=job.first, chunks=plan.chunks,
                          frames_done=plan.chunk_range(job.first)[0] if job.first < plan.chunks else plan.frames,
                          frames_total=plan.frames))
        sound = enc.AudioTrack(self.cfg, plan, job.audio, request.workdir)  # encodes while we render
        try:
            rendered = self._render(job, progress, should_stop)
            progress(Progress(phase="finalize", chunk=plan.chunks, chunks=plan.chunks, frames_done=plan.frames,
                              frames_total=plan.frames))
            with _timed(job.timings, "mux"):
                job.checkpoint.verify(plan, job.counted)
                enc.mux(self.cfg, plan, request.workdir, sound.wait(), request.output)
                got = enc.count_frames(self.cfg, request.output)
                if got != plan.frames:
                    raise RuntimeError(f"result has {got} video frames, expected {plan.frames}")
        finally:
            sound.close()
        return self._stats(job, rendered)

    def _render(self, job: _Job, progress: ProgressFn, should_stop: StopFn) -> int:
        tracking = face_tracking(self.engine)  # wav2lip: calibration, pads, smoothing
        boxes: Boxes | FixedBoxes
        if job.plan.face_box is not None:  # the ticket's face_box: no detection, pads or smoothing
            boxes = FixedBoxes(job.plan)
        else:
            boxes = Boxes(self.faces.start(job.video, job.plan), job.timings,
                          tracking.face_track(job.plan.width, job.plan.height, self.faces.geometry)
                          if tracking else None)
        job.boxes = boxes
        try:
            rendered = self._chunks(job, progress, should_stop)
            boxes.until(boxes.count)  # all of them, for the statistics and the face cache
            return rendered
        finally:
            boxes.close()

    def _start(self, request: RenderRequest, progress: ProgressFn) -> _Job:
        """Probe, decode the speech for the model, plan, and find where a previous attempt stopped."""
        timings: dict[str, float] = defaultdict(float)
        progress(Progress(phase="probe"))
        with _timed(timings, "probe"):
            audio, video = preflight(request.audio, request.video, self.cfg)
        request.workdir.mkdir(parents=True, exist_ok=True)
        with _timed(timings, "audio"):
            limit_s = 60 + self.cfg.timeout_factor * (audio.duration or 0)
            samples, offset = read_model_audio(self.cfg, audio, request.workdir / AUDIO16K, limit_s)
            check_decoded_audio(audio.path.name, samples / 16000, self.cfg)
        # one piece of the last chunk per encoder child (a plan made on a box of another core count
        # differs there, so a job moved to it starts over: never a wrong resume)
        plan = make_plan(video, samples / 16000, self.cfg, self.engine.fps, request.options,
                         self.cfg.tail_pieces or split(self.cfg).encoders)
        checkpoint = Checkpoint(request.workdir, self.cfg)
        first = checkpoint.resume_point(
            fingerprint(request.audio, request.video, self.engine.name, request.options, plan), plan)
        if first:
            log.info("%s: resuming at chunk %d of %d (chunks 1-%d already encoded)", request.job_id,
                     first + 1, plan.chunks, first)
        log.info("%s: %dx%d at %s fps, %d frames in %d chunks (source %d frames, loop %s)",
                 request.job_id, plan.width, plan.height, plan.fps_text, plan.frames, plan.chunks,
                 plan.source_frames, plan.loop)
        return _Job(request, audio, video, plan, checkpoint, first, samples, offset, timings)

    def _features(self, job: _Job) -> Any:
        """engine.prepare over a read-only map of the speech WAV: pages come and go, memory stays flat."""
        wav = np.memmap(job.request.workdir / AUDIO16K, dtype="<f4", mode="r", offset=job.offset,
                        shape=(job.samples,))
        try:
            return self.engine.prepare(wav, job.plan.fps, job.plan.frames)
        finally:
            del wav

    def _stats(self, job: _Job, rendered: int) -> dict[str, Any]:
        plan, timings, boxes = job.plan, job.timings, job.boxes
        assert boxes is not None
        missing = 0
        for a in range(0, plan.frames, 100_000):  # bounded temporaries, whatever the length
            src = plan.source_indices(a, min(plan.frames, a + 100_000))
            missing += int((boxes.rows[src, 0] < 0).sum())
        return {
            "frames": plan.frames, "fps": plan.fps, "width": plan.width, "height": plan.height,
            "chunks": plan.chunks, "resumed_from": job.first or None, "frames_rendered": rendered,
            "faces_missing": missing, "face_cache_hit": boxes.cached,
            "audio_s": round(plan.audio_s, 3), "source_frames": plan.source_frames,
            "looped": plan.loop if plan.frames > plan.source_frames and not plan.still else None,
            "normalised": _notes(job.video), "engine": self.engine.name,
            "warnings": [] if plan.face_box else list(getattr(self.engine, "warnings", ())),  # wav2lip: no S3FD
            "render_fps": round(rendered / timings["render"], 2) if timings.get("render") else None,
            "cpu_split": dataclasses.asdict(split(self.cfg)),
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }

    def _chunks(self, job: _Job, progress: ProgressFn, should_stop: StopFn) -> int:
        """The reader decodes ahead, this thread renders, one writer per encoder child feeds it a chunk."""
        plan, request, timings = job.plan, job.request, job.timings
        if job.first >= plan.chunks:
            return 0
        batch = max(1, min(self.cfg.batch_frames, self.engine.max_batch()))
        cores = split(self.cfg)
        blocks = _spans(plan, job.first, batch)
        ways = max(1, min(cores.decoders, len(blocks)))
        encoder = enc.SegmentEncoder(self.cfg, plan, request.workdir, job.first, batch, cores.encoders,
                                     cores.encoder_threads, Interleaved.held(ways), cores.chunk_threads)
        reader = Interleaved([FrameSource(self.cfg, job.video, plan) for _ in range(ways)], blocks,
                             encoder.buffer)
        started, done = time.monotonic(), 0
        try:
            with _timed(timings, "prepare"):  # the speech features, while the reader decodes ahead
                job.features = self._features(job)
            for i in range(job.first, plan.chunks):
                if should_stop():
                    reader.close()
                    encoder.finish()  # closes the last whole segment cleanly: the resume point
                    log.info("%s: stopping before chunk %d of %d", request.job_id, i + 1, plan.chunks)
                    raise Interrupted(f"stopped before chunk {i + 1} of {plan.chunks}")
                start, end = plan.chunk_range(i)
                for _ in _batches(i, start, end, batch):
                    with _timed(timings, "decode"):  # waiting for the reader (or, through it, the encoders)
                        first, frames = reader.get()
                    self._batch(job, first, frames)
                    encoder.submit(frames)
                    # news finer than a chunk, so "no progress" means none (the worker paces the writes)
                    progress(Progress(phase="render", chunk=i, chunks=plan.chunks, frames_done=first + len(frames),
                                      frames_total=plan.frames))
                done += end - start
                _trim_heap()
                timings["render"] = elapsed = max(time.monotonic() - started, 1e-6)
                progress(Progress(phase="render", chunk=i + 1, chunks=plan.chunks, frames_done=end,
                                  frames_total=plan.frames, fps=round(done / elapsed, 2),
                                  eta_s=round((plan.frames - end) * elapsed / done, 1)))
            reader.close()  # every frame is read: its decoders end while the last encoders finish
            with _timed(timings, "encode"):
                encoder.finish()
            job.counted.update(encoder.counted)
        except BaseException:
            reader.close()
            encoder.abort()
            raise
        finally:
            reader.close()
            timings["decode_waited_for_encoder"] += reader.waited_for_buffers
        return done

    def _batch(self, job: _Job, start: int, buf: np.ndarray) -> None:
        """Render one decoded batch in place (only the face region goes through the engine)."""
        plan, timings, boxes = job.plan, job.timings, job.boxes
        assert boxes is not None
        src = plan.source_indices(start, start + buf.shape[0])
        faces = boxes.until(int(src.max()) + 1)[src]  # waits while the face pass is behind
        with _timed(timings, "engine"):
            region = yuv.face_region(faces, plan.width, plan.height)
            if region is None:  # no face in the whole batch: nothing may change, skip the engine
                return
            # the engine sees the face region only (all it changes); boxes move into its pixels
            shift = np.array(region[:2] * 2, np.int32)
            local = np.where(faces[:, :1] >= 0, faces - shift, -1).astype(np.int32)
            # the parts, unsynchronised: the upload and write_back wait for the device, render only
            # queues its work there (on a GPU its time is the host's: launches, Python)
            with _timed(timings, "engine_upload"):
                rgb = yuv.to_rgb(buf, plan.width, plan.height, self.engine.device, region)
            with _timed(timings, "engine_render"):
                out = self.engine.render(Chunk(start=start, frames=rgb, boxes=local), job.features)
            if out is not rgb:
                with _timed(timings, "engine_write_back"):
                    yuv.write_back(buf, plan.width, plan.height, rgb, out, region)


def _batches(chunk: int, start: int, end: int, batch: int) -> list[tuple[int, int]]:
    """(start, count) of chunk `chunk`'s batches: `batch` frames each, the last one shorter; the job's
    very first batch is FIRST_BATCH frames, so the engine and the first encoder start once that many are
    decoded instead of a whole batch (on the GPU box that start did not come measurably sooner:
    bench/RESULTS.md, issue 15 sixth round). Only chunk 0's: an attempt resumed at a later chunk renders
    it in the batches the first one did."""
    first = FIRST_BATCH if chunk == 0 and batch > FIRST_BATCH else batch
    cuts = [start, *range(start + first, end, batch), end]
    return [(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)]


def _spans(plan: Plan, first_chunk: int, batch: int) -> list[list[tuple[int, int]]]:
    """(start, count) of every batch from `first_chunk` on, per decoder block (`Plan.block`: the decoders
    take turns by block, one seek each); batches never cross a chunk's end."""
    out: list[list[tuple[int, int]]] = []
    block = -1
    for i in range(first_chunk, plan.chunks):
        start, end = plan.chunk_range(i)
        if plan.block(i) != block:
            block = plan.block(i)
            out.append([])
        out[-1] += _batches(i, start, end, batch)
    return out


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to trim


def _trim_heap() -> None:
    """Give freed heap pages back to the system after each chunk (glibc keeps them otherwise).

    Batches allocate face-region tensors of varying size. Measured on a 10-minute 720p job: the worker
    held 293 MB after rendering without this, 258 MB with it; peaks during rendering were unchanged
    (bench/RESULTS.md). A resident worker should not sit on the last job's high-water mark.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    t = time.monotonic()
    try:
        yield
    finally:
        timings[stage] += time.monotonic() - t


def _notes(video: MediaInfo) -> list[str]:
    v = video.video
    if v is None:
        return []
    notes = [("still image", video.is_still), ("variable frame rate", v.vfr),
             (f"rotation {v.rotation}", bool(v.rotation)), ("interlaced", v.interlaced),
             (v.pix_fmt, v.pix_fmt not in ("yuv420p", "yuvj420p")),
             ("odd size", v.width % 2 == 1 or v.height % 2 == 1)]
    return [text for text, on in notes if on]
