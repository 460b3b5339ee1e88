"""What the media box costs (issue 20): start-up per child at each level, and one whole small job.

    .venv/bin/python bench/box_cost.py [--children 40] [--jobs 3]

Per child: `ffprobe` of a 2 s clip through process.run, unboxed and at each level the host allows
(the same argv the worker uses). Per job: the chunked renderer (copy engine) on a 4 s 320x240 job, with
the children it starts counted, at level "limits" vs the strongest level; medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import mediagen as g  # noqa: E402
from renderkit import config, render  # noqa: E402

from daemon.core.config import MediaConfig  # noqa: E402
from daemon.worker.media import box, process  # noqa: E402
from daemon.worker.media.probe import probe_argv  # noqa: E402


def per_child(clip: Path, n: int) -> dict[str, dict[str, float]]:
    """Median wall ms of `true` (the box's start-up alone) and of the worker's ffprobe, per level; the
    levels take turns run by run, so a load change on the shared box hits them alike."""
    cfg = MediaConfig()
    modes: list[str | None] = [None]
    for mode in ("limits", "unshare", "bwrap"):
        try:
            box.level(mode, cfg.ffmpeg)
            modes.append(mode)
        except Exception as exc:  # noqa: BLE001 - a level this host lacks is reported, not measured
            print(f"{mode}: not available ({exc})")
    commands = {"true": ["/bin/true"], "ffprobe": probe_argv(cfg, clip, still=False)}
    times: dict[str, dict[str, list[float]]] = {c: {str(m): [] for m in modes} for c in commands}
    for _ in range(n):
        for what, argv in commands.items():
            for mode in modes:
                boxed = box.for_probe(replace(cfg, sandbox=mode), clip) if mode else None
                started = time.perf_counter()
                done = process.run(argv, 60, capture_stdout=True, box=boxed)
                times[what][str(mode)].append(time.perf_counter() - started)
                assert done.returncode == 0, done.stderr_tail
    return {what: {("unboxed" if m == "None" else m): statistics.median(t) * 1000 for m, t in per.items()}
            for what, per in times.items()}


class Counting:
    """Counts children started through process.Child while a job renders."""

    def __init__(self) -> None:
        self.count = 0
        self._enter = process.Child.__enter__

    def __enter__(self) -> Counting:
        outer = self

        def enter(child: process.Child) -> process.Child:
            outer.count += child.box is not None
            return outer._enter(child)

        process.Child.__enter__ = enter  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        process.Child.__enter__ = self._enter  # type: ignore[method-assign]


def per_job(tmp: Path, jobs: int, strongest: str) -> dict[str, tuple[float, int]]:
    speech = g.tone(tmp / "speech.wav", 4.0, ar=48000)
    video = g.clip(tmp / "v.mp4", seconds=4, fps="25", size="320x240")
    out: dict[str, tuple[float, int]] = {}
    for mode in ("limits", strongest):
        times, children = [], 0
        for i in range(jobs):
            work = tmp / f"{mode}-{i}"
            work.mkdir()
            with Counting() as counted:
                started = time.perf_counter()
                render(work, speech, video, cfg=config(sandbox=mode))
                times.append(time.perf_counter() - started)
            children = counted.count
        out[mode] = (statistics.median(times), children)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        clip = g.clip(tmp / "c.mp4", seconds=2, size="320x240")
        for what, per in per_child(clip, args.children).items():
            for mode, ms in per.items():
                print(f"per child, {what:7s} {mode:8s}: {ms:6.1f} ms median wall ({args.children} runs)")
        strongest = box.level("auto", "ffmpeg").value
        for mode, (seconds, children) in per_job(tmp, args.jobs, strongest).items():
            print(f"per job,   {mode:8s}: {seconds:6.2f} s median render wall, {children} boxed children "
                  f"({args.jobs} jobs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
