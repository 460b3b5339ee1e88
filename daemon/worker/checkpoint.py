"""Durable chunk progress of one job in its workdir: which encoded segments a new attempt can keep.

`render.json` (written atomically) fingerprints the inputs, engine and plan; a segment counts as done
only if it probes with exactly its chunk's frame count (a killed encoder leaves a segment without an
index or a short one). A new attempt keeps the longest such prefix and re-renders from there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from daemon.core.atomic import read_json, write_json
from daemon.core.config import MediaConfig
from daemon.worker.media.encoder import SEGMENT, count_frames, segment_path
from daemon.worker.media.plan import Plan

log = logging.getLogger(__name__)

STATE = "render.json"
VERSION = 1


def fingerprint(audio: Path, video: Path, engine: str, options: dict[str, Any], plan: Plan) -> dict[str, Any]:
    def stat(p: Path) -> list[int]:
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]

    return {"version": VERSION, "audio": stat(audio), "video": stat(video), "engine": engine,
            "options": {k: options[k] for k in sorted(options)}, "plan": plan.to_json()}


class Checkpoint:
    def __init__(self, workdir: Path, cfg: MediaConfig) -> None:
        self.workdir = workdir
        self.cfg = cfg

    def resume_point(self, print_: dict[str, Any], plan: Plan) -> int:
        """First chunk still to render (0 = fresh start); clears anything that cannot be kept."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = self._read()
        if state.get("fingerprint") != print_:
            if state:
                log.info("inputs, engine or plan changed since the last attempt: starting over")
            self._clear(0)
            write_json(self.workdir / STATE, {"fingerprint": print_})
            return 0
        done = 0
        while done < plan.chunks:
            start, end = plan.chunk_range(done)
            path = segment_path(self.workdir, done)
            if not path.exists() or count_frames(self.cfg, path) != end - start:
                break
            done += 1
        self._clear(done)
        return done

    def verify(self, plan: Plan, counted: Mapping[int, int | None] | None = None) -> None:
        """Every segment complete before the mux; a gap here is a bug, not bad input. `counted`: what the
        encoders counted in the segments they just wrote; the rest (kept from an earlier attempt) are
        counted here, up to eight ffprobe children at once (each costs a process start)."""
        counts: dict[int, int | None] = {i: n for i, n in (counted or {}).items() if n is not None}
        todo = [i for i in range(plan.chunks) if i not in counts]
        with ThreadPoolExecutor(max(1, min(8, len(todo))), thread_name_prefix="verify") as pool:
            counts.update(zip(todo, pool.map(lambda i: count_frames(self.cfg, segment_path(self.workdir, i)),
                                             todo), strict=True))
        for i in range(plan.chunks):
            got = counts[i]
            start, end = plan.chunk_range(i)
            if got != end - start:
                raise RuntimeError(f"segment {i} has {got} frames, expected {end - start}")

    def _read(self) -> dict[str, Any]:
        try:
            data = read_json(self.workdir / STATE)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _clear(self, first: int) -> None:
        prefix = SEGMENT.split("{")[0]
        for path in self.workdir.glob(prefix + "*.mp4"):
            try:
                index = int(path.stem[len(prefix):])
            except ValueError:
                continue
            if index >= first:
                path.unlink()
