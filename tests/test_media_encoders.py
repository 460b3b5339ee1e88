"""Several x264 children encoding consecutive chunks at once: the result is the one-encoder result."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
from renderkit import assert_in_sync, audio_seconds, config, render

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault
from daemon.worker.checkpoint import Checkpoint
from daemon.worker.media import cores
from daemon.worker.media.decoder import decode_argv
from daemon.worker.media.encoder import SegmentEncoder
from daemon.worker.media.plan import DECODE_BLOCK, MIN_PIECE, Plan
from daemon.worker.media.probe import probe
from daemon.worker.pipeline import FIRST_BATCH, _batches, _spans
from daemon.worker.render import Interrupted

CHUNK = 10
W, H = 96, 64


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    return g.tone(tmp_path / "speech.wav", 2.3), g.clip(tmp_path / "v.mp4", seconds=2.4, size=f"{W}x{H}")


def lanes(encoders: int, **media: object):  # type: ignore[no-untyped-def]
    return config(chunk_frames=CHUNK, batch_frames=4, encoders=encoders, encoder_threads=1, **media)


def keyframes(segment: Path) -> list[str]:
    return subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
                           "-of", "csv=p=0", str(segment)], capture_output=True, text=True, check=True).stdout.split()


def test_three_encoders_give_every_frame_in_order_with_a_keyframe_per_segment(
        tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    audio, video = inputs
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    one = render(tmp_path / "one", audio, video, cfg=lanes(1))
    three = render(tmp_path / "three", audio, video, cfg=lanes(3))
    assert three.stats["cpu_split"]["encoders"] == 3 and one.stats["cpu_split"]["encoders"] == 1
    frames = three.stats["frames"]
    assert int(three.video["nb_read_packets"]) == int(one.video["nb_read_packets"]) == frames == 57
    assert_in_sync(three, audio_seconds(audio), 25.0)
    ref, got = g.decode_gray(one.path, W, H).astype(int), g.decode_gray(three.path, W, H).astype(int)
    assert ref.shape == got.shape == (frames, H, W)
    # same settings, one thread each: frame i of one equals frame i of the other, never a neighbour
    diffs = np.abs(got[:, None] - ref[None]).mean(axis=(2, 3))
    assert (diffs.argmin(axis=1) == np.arange(frames)).all() and diffs.diagonal().max() < 1.0
    for i in range(three.stats["chunks"]):
        flags = keyframes(tmp_path / "three" / "work" / f"seg_{i:05d}.mp4")
        assert len(flags) == min(CHUNK, frames - i * CHUNK) and flags[0].startswith("K"), (i, flags)


def test_stop_with_chunks_in_flight_then_resume_gives_the_same_result(tmp_path: Path,
                                                                      inputs: tuple[Path, Path]) -> None:
    audio, video = inputs
    checks = iter([False, False, False, True])
    with pytest.raises(Interrupted):
        render(tmp_path, audio, video, cfg=lanes(3), should_stop=lambda: next(checks))
    work = tmp_path / "work"
    assert sorted(p.name for p in work.glob("seg_*.mp4")) == [f"seg_{i:05d}.mp4" for i in range(3)]
    # a killed worker can leave a later chunk whole and an earlier one cut off: resume keeps the prefix
    (work / "seg_00001.mp4").write_bytes((work / "seg_00001.mp4").read_bytes()[:300])
    resumed = render(tmp_path, audio, video, cfg=lanes(3))
    assert resumed.stats["resumed_from"] == 1
    assert resumed.stats["frames_rendered"] == resumed.stats["frames"] - CHUNK
    assert int(resumed.video["nb_read_packets"]) == resumed.stats["frames"]
    assert_in_sync(resumed, audio_seconds(audio), 25.0)
    (tmp_path / "clean").mkdir()
    clean = render(tmp_path / "clean", audio, video, cfg=lanes(3))
    assert np.abs(g.decode_gray(resumed.path, W, H).astype(int) - g.decode_gray(clean.path, W, H)).mean() < 1.0


def test_the_split_adapts_to_the_core_count() -> None:
    auto = MediaConfig()
    # CI and laptops: one x264 on its own threads, one decoder; the decoders get their share of the cores
    assert cores.split(auto, 2) == cores.Split(1, 0, 1, 1, 2, 2, 0)  # one child: no ramp
    assert cores.split(auto, 16) == cores.Split(6, 3, 8, 2, 8, 2, 16)  # six x264 children on 3 threads each
    assert cores.split(auto, 8) == cores.Split(3, 3, 4, 2, 4, 2, 8)
    assert cores.split(auto, 32) == cores.Split(6, 6, 8, 2, 16, 4, 32)
    assert cores.split(auto, 64).encoders == cores.MAX_ENCODERS
    fixed = MediaConfig(encoders=3, encoder_threads=2, face_threads=5, decoders=3, ramp_threads=False)
    assert cores.split(fixed, 16) == cores.Split(3, 2, 5, 3, 5, 3, 0)


def test_the_last_whole_chunks_children_ramp_up_to_the_cores() -> None:
    split = cores.split(MediaConfig(), 16)
    # a 60 s job at 25 fps: five whole chunks of 250, then the last one's pieces (1250 frames after chunk 0)
    assert [split.chunk_threads(250, 1500 - 250 * (i + 1)) for i in range(5)] == [3, 4, 4, 6, 8]
    assert split.chunk_threads(250, 0) == 16  # nothing after it: all the cores, never more
    assert split.chunk_threads(250, 250 * 40) == 3  # early in a long job: the share of the cores
    assert cores.split(MediaConfig(ramp_threads=False), 16).chunk_threads(250, 250) == 3
    assert cores.split(MediaConfig(), 2).chunk_threads(250, 0) == 0  # one child: x264's own count


def test_each_whole_chunks_encoder_gets_its_ramped_threads_and_the_pieces_the_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.worker.media import encoder as enc
    seen: dict[int, int] = {}

    def argv(cfg: MediaConfig, plan: Plan, workdir: Path, chunk: int, threads: int = 0) -> list[str]:
        seen[chunk] = threads
        return [sys.executable, "-c", "import sys, pathlib; pathlib.Path(sys.argv[1]).write_bytes("
                "sys.stdin.buffer.read())", str(workdir / f"seg_{chunk:05d}.mp4")]
    monkeypatch.setattr(enc, "encode_argv", argv)
    plan = Plan(fps_num=25, fps_den=1, width=8, height=8, frames=40, source_frames=40, chunk_frames=8,
                loop="wrap", audio_s=1.6, still=False, deinterlace=False, tail_pieces=8)
    assert plan.chunks == 5 and not plan.whole(4)  # four whole chunks; 8 frames < MIN_PIECE: one piece
    split = cores.split(MediaConfig(), 16)
    coder = SegmentEncoder(MediaConfig(sandbox="limits"), plan, tmp_path, 0, batch=4, encoders=6,
                           threads=split.encoder_threads, chunk_threads=split.chunk_threads)
    for _ in range(0, plan.frames, 4):
        buf = coder.buffer()
        assert buf is not None
        coder.submit(buf[:4])
    coder.finish()
    # frames after chunks 0..3: 32, 24, 16, 8 → 16 x 8 / (8 + after) rounded up; the piece keeps 3
    assert seen == {0: 4, 1: 4, 2: 6, 3: 8, 4: 3}


def test_decoders_run_on_their_share_of_the_cores(tmp_path: Path) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=1, size=f"{W}x{H}")
    info = probe(video, MediaConfig())
    plan = plan_of(25, 25, 1)
    shares = cores.split(MediaConfig())
    argv = decode_argv(MediaConfig(), info, plan, 0, 25, threads=shares.decoder_threads)
    assert argv[argv.index("-threads") + 1] == str(shares.decoder_threads)
    assert argv.index("-threads") < argv.index("-i")  # the decoder's, not an output option
    assert "-threads" not in decode_argv(MediaConfig(), info, plan, 0, 25)
    decoded = subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout
    assert len(decoded) == 25 * plan.frame_bytes


def test_the_frame_pool_grows_by_half_a_chunk_per_extra_encoder() -> None:
    assert SegmentEncoder.pool_size(250, 16, 1) == 4
    assert SegmentEncoder.pool_size(250, 16, 4) == 4 + 3 * 8


@pytest.mark.parametrize("case", ["forward", "pingpong"])
def test_decoders_on_alternate_chunks_give_the_frames_of_one_decoder(tmp_path: Path, case: str) -> None:
    """Each decoder seeks to every chunk it reads (and, ping-ponging, reads backwards): same frames, same order."""
    audio = g.tone(tmp_path / "speech.wav", 2.3 if case == "forward" else 4.1)
    video = g.clip(tmp_path / "v.mp4", seconds=2.4 if case == "forward" else 1.6, size=f"{W}x{H}")
    results = {}
    for ways in (1, 3):
        (tmp_path / str(ways)).mkdir()
        results[ways] = render(tmp_path / str(ways), audio, video, cfg=lanes(2, decoders=ways))
        assert results[ways].stats["cpu_split"]["decoders"] == ways
    one, three = results[1], results[3]
    assert three.stats["frames"] == one.stats["frames"] == int(three.video["nb_read_packets"])
    assert (one.stats["looped"] == "pingpong") == (case == "pingpong")
    assert np.array_equal(g.decode_gray(three.path, W, H), g.decode_gray(one.path, W, H))


def plan_of(frames: int, chunk: int, pieces: int) -> Plan:
    return Plan(fps_num=25, fps_den=1, width=W, height=H, frames=frames, source_frames=frames, chunk_frames=chunk,
                loop="pingpong", audio_s=frames / 25, still=False, deinterlace=False, tail_pieces=pieces)


@pytest.mark.parametrize("frames", [1, 24, 250, 251, 1500, 1510, 1560, 1749])
@pytest.mark.parametrize("pieces", [1, 2, 4, 7])
def test_the_last_chunk_is_cut_in_pieces_that_tile_it(frames: int, pieces: int) -> None:
    plan, whole = plan_of(frames, 250, pieces), plan_of(frames, 250, 1)
    ranges = [plan.chunk_range(i) for i in range(plan.chunks)]
    assert ranges[0][0] == 0 and ranges[-1][1] == frames
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # no gap, no overlap
    body = whole.chunks - 1
    assert ranges[:body] == [whole.chunk_range(i) for i in range(body)]  # only the last chunk changes
    last = whole.chunk_range(body)
    cut = ranges[body:]
    assert len(cut) == max(1, min(pieces, (last[1] - last[0]) // MIN_PIECE))
    assert all(end - start >= min(MIN_PIECE, last[1] - last[0]) for start, end in cut)
    assert max(e - s for s, e in cut) - min(e - s for s, e in cut) <= 1  # even pieces
    assert {plan.block(i) for i in range(body, plan.chunks)} == {body}  # one decoder block


@pytest.mark.parametrize("chunk", [60, 100, 125, 250, 400])
@pytest.mark.parametrize("frames", [90, 1500, 1510])
def test_decoder_blocks_are_whole_chunks_of_at_least_a_default_gop(chunk: int, frames: int) -> None:
    plan = plan_of(frames, chunk, 6)
    assert plan.block_frames % chunk == 0 and DECODE_BLOCK <= plan.block_frames < DECODE_BLOCK + chunk
    blocks = [plan.block(i) for i in range(plan.chunks)]
    assert blocks == sorted(blocks) and blocks[0] == 0
    for i in range(plan.chunks):  # a block is one run of frames: it starts where a new one begins
        start = plan.chunk_range(i)[0]
        assert blocks[i] == start // plan.block_frames
        assert (i == 0 or blocks[i] != blocks[i - 1]) == (start % plan.block_frames == 0)
    spans = _spans(plan, 0, 64)
    assert [s for block in spans for s in block][0][0] == 0 and len(spans) == blocks[-1] + 1
    for block in spans:  # no seek inside a block: its batches follow each other
        assert all(a[0] + a[1] == b[0] for a, b in zip(block, block[1:], strict=False))


def test_the_jobs_first_batch_is_short_so_rendering_starts_before_a_whole_batch_is_decoded() -> None:
    assert FIRST_BATCH < 64
    assert [n for _, n in _batches(0, 0, 250, 64)] == [FIRST_BATCH, 64, 64, 64, 250 - FIRST_BATCH - 192]
    assert [n for _, n in _batches(1, 250, 500, 64)] == [64, 64, 64, 58]  # later chunks: whole batches
    assert _batches(0, 0, 10, 64) == [(0, 10)] and _batches(0, 0, 40, 8) == [(0, 8), (8, 8), (16, 8), (24, 8),
                                                                           (32, 8)]
    plan = plan_of(1000, 250, 6)
    fresh = [s for block in _spans(plan, 0, 64) for s in block]
    resumed = [s for block in _spans(plan, 2, 64) for s in block]
    assert fresh[:2] == [(0, FIRST_BATCH), (FIRST_BATCH, 64)] and fresh[-len(resumed):] == resumed
    assert sum(n for _, n in fresh) == plan.frames


def test_a_last_chunk_in_pieces_gives_the_frames_of_a_whole_one_and_resumes(tmp_path: Path) -> None:
    audio = g.tone(tmp_path / "speech.wav", 4.6)
    video = g.clip(tmp_path / "v.mp4", seconds=5, size=f"{W}x{H}")
    cut = dict(chunk_frames=60, batch_frames=8, encoders=3, encoder_threads=1)
    (tmp_path / "whole").mkdir()
    whole = render(tmp_path / "whole", audio, video, cfg=config(**cut, tail_pieces=1))
    checks = iter([False, False, True])  # stops before the second piece of the last chunk
    with pytest.raises(Interrupted):
        render(tmp_path, audio, video, cfg=config(**cut, tail_pieces=3), should_stop=lambda: next(checks))
    pieces = render(tmp_path, audio, video, cfg=config(**cut, tail_pieces=3))
    frames = pieces.stats["frames"]
    assert frames == whole.stats["frames"] == int(pieces.video["nb_read_packets"]) == 115
    assert (whole.stats["chunks"], pieces.stats["chunks"]) == (2, 3)  # 60 + 55, 60 + 27 + 28
    assert pieces.stats["resumed_from"] == 2 and pieces.stats["frames_rendered"] == 28
    assert_in_sync(pieces, audio_seconds(audio), 25.0)
    assert np.array_equal(g.decode_gray(pieces.path, W, H)[:60], g.decode_gray(whole.path, W, H)[:60])
    ref, got = g.decode_gray(whole.path, W, H).astype(int), g.decode_gray(pieces.path, W, H).astype(int)
    diffs = np.abs(got[:, None] - ref[None]).mean(axis=(2, 3))
    assert (diffs.argmin(axis=1) == np.arange(frames)).all()  # every frame where it belongs
    # the same x264 settings; a piece opens a GOP of its own, so only the coding noise differs: measured
    # against the source, the cut result is as close as the whole one
    src = g.decode_gray(video, W, H)[:frames].astype(int)
    err_whole, err_cut = np.abs(ref - src).mean(axis=(1, 2)), np.abs(got - src).mean(axis=(1, 2))
    assert err_cut.mean() <= 1.05 * err_whole.mean() and err_cut.max() <= 1.05 * err_whole.max()
    for i, n in enumerate((60, 27, 28)):
        flags = keyframes(tmp_path / "work" / f"seg_{i:05d}.mp4")
        assert len(flags) == n and flags[0].startswith("K"), (i, flags)


SLOW_X264 = """
import sys, time
path, log = sys.argv[1], sys.argv[2]
with open(log, "a") as f:
    f.write(f"start {path} {time.monotonic()}\\n")
n = 0
while block := sys.stdin.buffer.read(65536):
    n += len(block)
    time.sleep(0.1)
with open(path, "wb") as f:
    f.write(str(n).encode())
with open(log, "a") as f:
    f.write(f"end {path} {time.monotonic()}\\n")
"""


def test_the_render_loop_queues_chunks_ahead_of_busy_encoders_without_more_children(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk's frames are taken while its child must still wait for a turn; children start in chunk
    order and never more than encoders + 1 run at once; every segment gets all its frames."""
    from daemon.worker.media import encoder as enc
    log = tmp_path / "children.log"
    monkeypatch.setattr(enc, "encode_argv", lambda cfg, plan, workdir, chunk, threads=0: [
        sys.executable, "-c", SLOW_X264, str(workdir / f"seg_{chunk:05d}.mp4"), str(log)])
    plan = plan_of(48, 8, 1)  # six chunks of 8 frames
    cfg = MediaConfig(sandbox="limits")
    coder = SegmentEncoder(cfg, plan, tmp_path, 0, batch=4, encoders=2, extra_buffers=20)
    t = time.monotonic()
    for start in range(0, 32, 4):  # four chunks' frames, while the children write at their slow pace
        buf = coder.buffer()
        assert buf is not None
        buf[:4] = start
        coder.submit(buf[:4])
    queued_in = time.monotonic() - t
    coder.finish()
    events = {(kind, Path(path).name): float(ts) for kind, path, ts in
              (line.split() for line in log.read_text().splitlines())}
    starts = [events["start", f"seg_{i:05d}.mp4"] for i in range(4)]
    ends = [events["end", f"seg_{i:05d}.mp4"] for i in range(4)]
    assert starts[3] >= ends[0]  # chunk 3's child waited for its turn: chunk 0's was done
    assert max(sum(s <= at for s in starts) - sum(e <= at for e in ends) for at in starts) <= 3  # encoders + 1
    # a child takes >= 0.2 s per chunk (two reads): all four chunks were taken before the first was done
    assert queued_in < min(ends) - t
    assert all((tmp_path / f"seg_{i:05d}.mp4").read_text() == str(8 * plan.frame_bytes) for i in range(4))


def test_the_last_chunks_pieces_start_as_their_frames_come_not_in_turns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pieces are the job's end: their children start beside the whole chunks' children, which
    still take their turns; every segment gets all its frames."""
    from daemon.worker.media import encoder as enc
    log = tmp_path / "children.log"
    monkeypatch.setattr(enc, "encode_argv", lambda cfg, plan, workdir, chunk, threads=0: [
        sys.executable, "-c", SLOW_X264, str(workdir / f"seg_{chunk:05d}.mp4"), str(log)])
    plan = plan_of(300, 100, 4)  # chunks 0-1 of 100 frames (>= 1.4 s each here), then 4 pieces of 25
    assert plan.chunks == 6 and plan.pieces == 4
    coder = SegmentEncoder(MediaConfig(sandbox="limits"), plan, tmp_path, 0, batch=4, encoders=1,
                           extra_buffers=80)
    for first, end in map(plan.chunk_range, range(plan.chunks)):
        for start in range(first, end, 4):  # a batch never crosses a chunk's end
            buf = coder.buffer()
            assert buf is not None
            coder.submit(buf[:min(4, end - start)])
    coder.finish()
    events = {(kind, Path(path).name): float(ts) for kind, path, ts in
              (line.split() for line in log.read_text().splitlines())}
    starts = [events["start", f"seg_{i:05d}.mp4"] for i in range(6)]
    ends = [events["end", f"seg_{i:05d}.mp4"] for i in range(6)]
    assert all(starts[i] < ends[0] for i in range(2, 6))  # no piece waited for a whole chunk's child
    sizes = [b - a for a, b in map(plan.chunk_range, range(6))]
    assert [int((tmp_path / f"seg_{i:05d}.mp4").read_text()) for i in range(6)] == \
        [n * plan.frame_bytes for n in sizes]


def test_the_mux_check_counts_only_the_segments_no_encoder_counted(tmp_path: Path,
                                                                  inputs: tuple[Path, Path]) -> None:
    """Each lane counts its segment as it finishes; before the mux only segments kept from an earlier
    attempt are probed again."""
    audio, video = inputs
    render(tmp_path, audio, video, cfg=lanes(3))
    work, plan, cfg = tmp_path / "work", plan_of(57, CHUNK, 1), MediaConfig()
    checkpoint = Checkpoint(work, cfg)
    checkpoint.verify(plan)  # all probed: complete
    sizes = {i: plan.chunk_range(i)[1] - plan.chunk_range(i)[0] for i in range(plan.chunks)}
    (work / "seg_00002.mp4").write_bytes(b"cut off")
    with pytest.raises(RuntimeError, match="segment 2 has None frames"):
        checkpoint.verify(plan, {i: n for i, n in sizes.items() if i != 2})
    checkpoint.verify(plan, sizes)  # what the encoders counted is not probed again
    with pytest.raises(RuntimeError, match="segment 2 has 9 frames, expected 10"):
        checkpoint.verify(plan, {**sizes, 2: 9})


def test_an_encoder_that_cannot_start_is_the_machines_fault_and_gives_its_frames_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.worker.media import encoder as enc
    monkeypatch.setattr(enc, "encode_argv", lambda cfg, plan, workdir, chunk, threads=0: [
        str(tmp_path / "no-such-ffmpeg")])
    monkeypatch.setattr(enc.boxes, "for_encoder", lambda cfg, plan, workdir: None)  # spawned bare: no start
    coder = SegmentEncoder(MediaConfig(sandbox="limits"), plan_of(8, 8, 1), tmp_path, 0, batch=4)
    pool = [coder.buffer() for _ in range(SegmentEncoder.pool_size(8, 4, 1))]  # every buffer taken
    assert all(b is not None for b in pool)
    coder.submit(pool[0][:4])  # type: ignore[index]
    with pytest.raises(EnvironmentFault, match="not found"):
        coder.finish()
    assert coder._free.qsize() == 1  # the batch it held is back in the pool


def test_a_lane_lets_the_next_child_go_before_it_counts_its_segment(tmp_path: Path) -> None:
    import queue
    import threading

    from daemon.worker.media.lane import Lane

    counting, release = threading.Event(), threading.Event()

    def count() -> int:
        counting.set()
        release.wait(30)
        return 3

    free: queue.Queue[np.ndarray] = queue.Queue()
    argv = [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"]
    lane = Lane(argv, 0, 3, 1 << 16, 30, free, count=count)
    lane.put(np.zeros((3, 8), np.uint8))
    assert counting.wait(30)
    assert lane.finished.is_set() and lane.counted is None  # the next lane may start; the probe still runs
    release.set()
    lane.join()
    assert lane.counted == 3 and free.qsize() == 1


def test_a_lane_writes_every_byte_when_signals_interrupt_its_writes(tmp_path: Path) -> None:
    """A signal that reaches the writer thread mid-write (a stop request, SIGSTOP/SIGCONT, a profiler
    attaching) cuts a raw pipe write short; the lane writes the rest instead of dropping it."""
    import queue
    import signal

    from daemon.worker.media.lane import Lane

    out = tmp_path / "written"
    free: queue.Queue[np.ndarray] = queue.Queue()
    # the child reads nothing for a while: every write fills the pipe and blocks, where signals land
    argv = ["sh", "-c", f"sleep 0.3; exec cat > '{out}'"]
    frames = np.arange(6 * (4 << 20), dtype=np.uint32).astype(np.uint8).reshape(6, 4 << 20)
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)  # a handler: the write returns, not restarts
    try:
        lane = Lane(argv, 0, len(frames), 1 << 16, 60, free)
        for k in range(0, len(frames), 2):
            lane.put(frames[k:k + 2])
        hits = 0
        while lane.running and hits < 20_000:
            try:
                signal.pthread_kill(lane._thread.ident or 0, signal.SIGUSR1)
            except ProcessLookupError:
                break
            hits += 1
            time.sleep(0.001)
        lane.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert hits > 10  # the writes were interrupted, many times
    assert out.read_bytes() == frames.tobytes()
