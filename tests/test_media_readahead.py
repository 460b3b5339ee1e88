"""The decode-ahead thread: same frames as reading directly, errors in the caller, clean stops."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
from conftest import ffmpeg_children
from renderkit import config

from daemon.core.errors import JobRejected
from daemon.worker.media.decoder import FrameSource
from daemon.worker.media.plan import make_plan
from daemon.worker.media.probe import probe
from daemon.worker.media.readahead import ReadAhead

CFG = config().media


def pool(plan, batch: int, count: int):  # type: ignore[no-untyped-def]
    free: queue.Queue[np.ndarray] = queue.Queue()
    for _ in range(count):
        free.put(np.empty((batch, plan.frame_bytes), np.uint8))

    def take(stop: threading.Event) -> np.ndarray | None:
        while not stop.is_set():
            try:
                return free.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    return free, take


def test_batches_arrive_in_order_and_equal_direct_reads_through_a_ping_pong_loop(tmp_path: Path) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=2, audio=False)
    info = probe(video, CFG)
    plan = make_plan(info, 3.4, CFG, None, {})  # 85 frames of a 50-frame clip: forward, then backward
    assert plan.frames > plan.source_frames
    spans = [(a, min(8, plan.frames - a)) for a in range(0, plan.frames, 8)]
    direct = np.empty((plan.frames, plan.frame_bytes), np.uint8)
    source = FrameSource(CFG, info, plan)
    for a, n in spans:
        source.read(a, n, direct[a:a + n])
    source.close()
    free, take = pool(plan, 8, 3)
    reader = ReadAhead(FrameSource(CFG, info, plan), spans, take)
    try:
        for a, n in spans:
            start, frames = reader.get()
            assert (start, len(frames)) == (a, n)
            assert np.array_equal(frames, direct[a:a + n]), f"batch at {a}"
            free.put(frames.base if frames.base is not None else frames)
    finally:
        reader.close()
    assert not ffmpeg_children()


def test_a_truncated_video_is_rejected_in_the_callers_thread(tmp_path: Path) -> None:
    full = g.clip(tmp_path / "full.mp4", seconds=4, size="320x240", audio=False,
                  extra=("-movflags", "+faststart"))
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    info = probe(cut, CFG)
    plan = make_plan(info, 3.9, CFG, None, {})
    free, take = pool(plan, 10, 2)
    reader = ReadAhead(FrameSource(CFG, info, plan), [(a, 10) for a in range(0, 90, 10)], take)
    try:
        with pytest.raises(JobRejected) as caught:
            for _ in range(9):
                _, frames = reader.get()
                free.put(frames.base if frames.base is not None else frames)
        assert caught.value.code == "video_truncated"
    finally:
        reader.close()
    assert not ffmpeg_children()


def test_close_ends_a_reader_blocked_on_the_queue_on_buffers_or_mid_read(tmp_path: Path) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=8, size="640x360", audio=False)
    info = probe(video, CFG)
    plan = make_plan(info, 8.0, CFG, None, {})
    cases = {"full queue": (20, 3), "no buffer comes back": (20, 1), "mid-read": (200, 1)}
    for case, (batch, buffers) in cases.items():
        _, take = pool(plan, batch, buffers)
        reader = ReadAhead(FrameSource(CFG, info, plan), [(a, batch) for a in range(0, 200, batch)], take,
                           depth=1)
        if case != "mid-read":
            reader.get()  # never given back
            time.sleep(0.5)  # the reader now waits on the queue or on `take`
        else:
            time.sleep(0.05)  # decoding 200 frames takes longer than this
        started = time.monotonic()
        reader.close()
        assert time.monotonic() - started < 5, case
        assert not reader._thread.is_alive(), case
        assert not ffmpeg_children(), case
