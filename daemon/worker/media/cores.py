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

from daemon.core.config import MediaConfig

CORES_PER_ENCODER = 4  # one more child per this many cores
MAX_ENCODERS = 4  # each in-flight encoder holds up to half a chunk of raw frames (memory)
MIN_CORES_FOR_LANES = 8  # small boxes (CI, laptops): one encoder with x264's own thread count
PARALLEL_DECODERS = 2  # on boxes with MIN_CORES_FOR_LANES or more


@dataclass(frozen=True)
class Split:
    encoders: int  # x264 children running at once, one chunk each
    encoder_threads: int  # x264 threads per child; 0 = x264's own choice (1.5 x cores, shared)
    face_threads: int  # face-pass segments analysed at once
    decoders: int = 1  # decoder children, each reading every `decoders`-th chunk


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask, which cgroup cpusets and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def split(cfg: MediaConfig, cpus: int | None = None) -> Split:
    """media.encoders / encoder_threads / face_threads / decoders, each 0 = chosen from the core count."""
    cpus = cpus or usable_cpus()
    auto_lanes = 1 if cpus < MIN_CORES_FOR_LANES else min(MAX_ENCODERS, cpus // CORES_PER_ENCODER)
    encoders = cfg.encoders or auto_lanes
    # every child keeps x264's own thread count (1.5 x cores): while K run the kernel shares the cores
    # among them, and the last chunk of a job, alone at the end, still gets all of them. K x (cores / K)
    # threads left that chunk on a quarter of the box: 0.6-0.8 s of encoding after the last frame of a
    # 60 s 720p job on the H200 box (bench/RESULTS.md, issue 15)
    threads = cfg.encoder_threads
    # x264 leaves cores idle between frames (lookahead, entropy coding): the face pass fits in there
    faces = cfg.face_threads or max(1, min(8, cpus // 2))
    decoders = cfg.decoders or (1 if cpus < MIN_CORES_FOR_LANES else PARALLEL_DECODERS)
    return Split(encoders, threads, faces, decoders)
