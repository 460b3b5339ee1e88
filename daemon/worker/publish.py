"""Publishing a result: flushed, probed, still ours, then renamed to its final name inside the job.

Nothing is published half-written: the renderer writes a hidden temporary name, we fsync and probe it,
check that our claim still stands (a takeover by another worker means we discard), and rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemon.core import lease
from daemon.core.errors import EnvironmentFault, JobLost
from daemon.worker.media import mp4index, process


def part_name(output: str, attempt: int) -> str:
    stem, _, ext = output.rpartition(".")
    return f".{stem}.a{attempt}.part.{ext or 'mp4'}"


def verify(path: Path, ffprobe: str, timeout_s: float) -> dict[str, float]:
    """Check a finished result: it must have a picture and a sound track and a duration. Read from its
    MP4 index in-process (mp4index.py; an ffprobe start was on every job's path after the mux), with
    ffprobe for a file that reader declines."""
    index = mp4index.read(path)
    if index is None:
        return _probe(path, ffprobe, timeout_s)
    kinds = sorted({t.kind for t in index.tracks})
    if not index.has("vide") or not index.has("soun") or index.duration_s <= 0:
        raise EnvironmentFault(f"our own result {path.name} is incomplete (tracks {kinds}, {index.duration_s} s)")
    return {"duration_s": round(index.duration_s, 6)}


def _probe(path: Path, ffprobe: str, timeout_s: float) -> dict[str, float]:
    argv = [process.resolve(ffprobe), "-v", "error", "-protocol_whitelist", "file",
            "-show_entries", "format=duration:stream=codec_type,nb_frames", "-of", "json",
            f"file:{path.resolve()}"]
    done = process.run(argv, timeout_s, capture_stdout=True)
    if done.returncode != 0:
        raise EnvironmentFault(f"our own result {path.name} does not probe: {done.stderr_tail[-300:]}")
    info = json.loads(done.stdout or b"{}")
    kinds = [s.get("codec_type") for s in info.get("streams", [])]
    duration = float(info.get("format", {}).get("duration") or 0)
    if "video" not in kinds or "audio" not in kinds or duration <= 0:
        raise EnvironmentFault(f"our own result {path.name} is incomplete (streams {kinds}, {duration} s)")
    return {"duration_s": duration}


def still_ours(job_dir: Path, ident: lease.Identity) -> None:
    held = lease.read(job_dir)
    if held is None or held.get("pid") != ident.pid or held.get("host") != ident.host:
        raise JobLost(f"{job_dir.name} is no longer ours (lease gone or taken over)")


def raise_if_taken_over(job_dir: Path, ident: lease.Identity) -> None:
    """JobLost only when we know the claim is gone (folder renamed away, or someone else's lease);
    an unreadable lease on a sick share proves nothing and leaves the original error standing."""
    if not os.path.lexists(job_dir):
        raise JobLost(f"{job_dir.name} was moved away (taken over after our lease expired)")
    held = lease.read(job_dir)
    if held is not None and (held.get("pid") != ident.pid or held.get("host") != ident.host):
        raise JobLost(f"{job_dir.name} is held by {held.get('host')}/{held.get('pid')} now")


def publish(part: Path, final: Path, job_dir: Path, ident: lease.Identity) -> None:
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    still_ours(job_dir, ident)
    if final.exists():
        raise FileExistsError(f"{final} exists; a result is never overwritten")
    os.rename(part, final)
