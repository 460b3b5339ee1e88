"""How the worker's CPU cores are split between decoders, x264 encoder children and the face pass.

A plain ffmpeg transcode runs one x264 with all cores; x264's frame threads stop scaling well before 16
cores, and our output is already cut into independent closed-GOP segments, so K encoders with fewer
threads each encode consecutive chunks side by side. Likewise one decoder writing raw frames into a pipe
is serial (its pipe writes), so bigger boxes decode alternate chunks in two. The face pass gets the
cores left over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from threadpoolctl import threadpool_limits

from daemon.core.config import MediaConfig

ENCODERS_PER_8_CORES = 3  # children per core count (6 on 16 cores), each with cores / children threads
MAX_ENCODERS = 6  # each in-flight encoder holds up to half a chunk of raw frames (memory)
MIN_CORES_FOR_LANES = 8  # small boxes (CI, laptops): one encoder with x264's own thread count
PARALLEL_DECODERS = 2  # on boxes with MIN_CORES_FOR_LANES or more


@dataclass(frozen=True)
class Split:
    encoders: int  # x264 children running at once, one chunk each
    encoder_threads: int  # x264 threads per child; 0 = x264's own choice (1.5 x cores, shared)
    face_threads: int  # face-pass segments analysed at once
    decoders: int = 1  # decoder children, each reading every `decoders`-th chunk
    decoder_threads: int = 0  # ffmpeg threads per render decoder; 0 = ffmpeg's own count
    face_decoder_threads: int = 0  # ffmpeg threads per face-pass decoder (face_threads of them at once)
    tail_cpus: int = 0  # cores the child of one of the job's last whole chunks may grow to; 0 = fixed threads

    def chunk_threads(self, chunk_frames: int, frames_after: int) -> int:
        """x264 threads for a whole chunk with `frames_after` of the job's frames after it: the cores
        over the chunks left from it on (cores x chunk / (chunk + after)), at least `encoder_threads`.
        A child's threads are fixed when it starts, and the last chunks' children outlive the others, so
        they take the cores those leave idle (each 3-thread child runs at its own pace, ~190 frames/s at
        720p, whatever is free beside it, bench/RESULTS.md, issue 15 fifth round)."""
        if not self.tail_cpus or not self.encoder_threads:
            return self.encoder_threads
        share = -(-self.tail_cpus * chunk_frames // (chunk_frames + frames_after))  # at most tail_cpus
        return max(self.encoder_threads, share)


def one_blas_thread() -> None:
    """numpy's BLAS on one thread in this process, from now on (the worker calls it once).

    The worker's only BLAS call is the mel filter bank's product, a few ms per block; OpenBLAS runs it
    on a thread per core, and its idle threads spin for a while after each call, against the x264
    children (10 minutes of speech on the 2-core dev box: 0.54-0.60 CPU-s for the mel with one thread,
    1.13-1.35 with two, in the same wall time; `bench/mel_threads.py`, bench/RESULTS.md).
    """
    threadpool_limits(limits=1, user_api="blas")


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, which cgroup cpusets and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def split(cfg: MediaConfig, cpus: int | None = None) -> Split:
    """media.encoders / encoder_threads / face_threads / decoders, each 0 = chosen from the core count."""
    cpus = cpus or usable_cpus()
    auto_lanes = 1 if cpus < MIN_CORES_FOR_LANES else min(MAX_ENCODERS, cpus * ENCODERS_PER_8_CORES // 8)
    encoders = cfg.encoders or auto_lanes
    # K children with cores / K threads each (rounded up): x264 scales better as more children with
    # fewer threads (6 x 3 on 16 cores: 10 % less render time at 1080p than 4 children with x264's own
    # 24 threads each, 12 % less x264 CPU, 15 % less memory; bench/RESULTS.md, issue 15 third round).
    # The last chunk is cut in one piece per child (plan.tail_pieces), so the job's end is not left to
    # one child on a few threads. One child alone keeps x264's own count.
    threads = cfg.encoder_threads or (0 if encoders == 1 else -(-cpus // encoders))
    # x264 leaves cores idle between frames (lookahead, entropy coding): the face pass fits in there
    faces = cfg.face_threads or max(1, min(8, cpus // 2))
    decoders = cfg.decoders or (1 if cpus < MIN_CORES_FOR_LANES else PARALLEL_DECODERS)
    # decoders running side by side share the cores too: ffmpeg's own count is a frame thread per core
    # (16 on the GPU box), each holding frames of its own, so the face pass's 8 decoders at once held
    # 629 MB of a 30-minute job's peak (bench/RESULTS.md, issue 15 fourth round)
    return Split(encoders, threads, faces, decoders, max(1, cpus // decoders), max(1, cpus // faces),
                 cpus if cfg.ramp_threads and encoders > 1 else 0)
