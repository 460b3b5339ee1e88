"""How fast the worker gets decoded frames from an ffmpeg child: a pipe read as before, and the Unix
socket that `process.Child` gives now, each alone and beside a thread that keeps the GIL busy (as the
render loop does on a GPU box: kernel launches and Python between them).

    python3 bench/pipe_reader.py CLIP [--batch 64] [--repeat 2]

The decoder is the pipeline's own command (decode_argv, no box); the numbers are frames per second of
the whole clip into a batch buffer, best of the repeats.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.core.config import MediaConfig  # noqa: E402
from daemon.worker.media import process  # noqa: E402
from daemon.worker.media.decoder import decode_argv  # noqa: E402
from daemon.worker.media.plan import make_plan  # noqa: E402
from daemon.worker.media.probe import probe  # noqa: E402


def busy(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i


def read_pipe(argv: list[str], buf: np.ndarray) -> int:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0)
    assert proc.stdout is not None
    fcntl.fcntl(proc.stdout.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ, as the worker did
    view, got = buf.data.cast("B"), 0
    while True:
        filled = 0
        while filled < len(view):
            k = proc.stdout.readinto(view[filled:])
            if not k:
                break
            filled += k
        got += filled // buf.shape[1]
        if filled < len(view):
            break
    proc.wait()
    return got


def read_socket(argv: list[str], buf: np.ndarray) -> int:
    with process.Child(argv, stdout=True, pipe_size=1 << 20) as child:
        got = 0
        while (filled := child.read_into(buf.data.cast("B"))) == buf.nbytes:
            got += buf.shape[0]
        got += filled // buf.shape[1]
        child.wait(120)
    return got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clip", type=Path)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    cfg = MediaConfig()
    info = probe(args.clip, cfg)
    plan = make_plan(info, info.duration, cfg, None, {})
    argv = decode_argv(cfg, info, plan, 0, plan.source_frames)
    buf = np.empty((args.batch, plan.frame_bytes), np.uint8)
    results = {}
    for how, read in (("pipe", read_pipe), ("socket", read_socket)):
        for loaded in (False, True):
            best = 0.0
            for _ in range(args.repeat):
                stop = threading.Event()
                hog = threading.Thread(target=busy, args=(stop,))
                if loaded:
                    hog.start()
                t = time.perf_counter()
                got = read(argv, buf)
                dt = time.perf_counter() - t
                stop.set()
                if loaded:
                    hog.join()
                assert got == plan.source_frames, (got, plan.source_frames)
                best = max(best, got / dt)
            key = f"{how}{' + busy thread' if loaded else ''}"
            results[key] = round(best, 1)
            print(f"{args.clip.name} {plan.width}x{plan.height}: {key}: {best:.0f} frames/s", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"clip": str(args.clip), "frames": plan.source_frames, "fps": results},
                                       indent=1))


if __name__ == "__main__":
    main()
