"""The in-process MP4 index (sample count, keyframes, tracks, duration) against ffprobe, on our own segments
and results, and what it declines."""

from __future__ import annotations

from pathlib import Path

import mediagen as g
import pytest
from renderkit import config, render

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault
from daemon.worker.media import mp4index
from daemon.worker.media.encoder import _probe_frames, count_frames
from daemon.worker.media.mp4index import video_samples
from daemon.worker.publish import _probe, verify

CFG = MediaConfig()


def test_segments_and_the_result_count_as_ffprobe_counts_them(tmp_path: Path) -> None:
    audio = g.tone(tmp_path / "speech.wav", 3.3)
    video = g.clip(tmp_path / "v.mp4", seconds=4, size="96x64")
    result = render(tmp_path, audio, video, cfg=config(chunk_frames=25, batch_frames=8, encoders=2,
                                                       encoder_threads=1, tail_pieces=2))
    frames = result.stats["frames"]
    segments = sorted((tmp_path / "work").glob("seg_*.mp4"))
    assert len(segments) == result.stats["chunks"] > 2
    for path in segments:  # the whole chunks and the last one's pieces
        assert video_samples(path) == _probe_frames(CFG, path) > 0
    assert sum(video_samples(p) or 0 for p in segments) == frames
    assert video_samples(result.path) == _probe_frames(CFG, result.path) == frames  # faststart: moov first


def test_files_the_index_reader_declines_are_counted_by_ffprobe_or_not_at_all(tmp_path: Path) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=2, size="96x64", audio=True)
    fragmented = tmp_path / "frag.mp4"
    g.ff("-i", video, "-c", "copy", "-movflags", "frag_keyframe+empty_moov", fragmented)
    assert video_samples(fragmented) is None and count_frames(CFG, fragmented) == 50
    sound = tmp_path / "a.m4a"
    g.ff("-i", video, "-vn", "-c:a", "copy", sound)
    assert video_samples(sound) is None  # no video track
    data = video.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # an encoder killed mid-write: no index at the end
    assert video_samples(cut) is None and count_frames(CFG, cut) is None
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x01free" + b"\xff" * 40)  # a 64-bit size that runs past the file
    assert video_samples(junk) is None
    assert video_samples(tmp_path / "missing.mp4") is None


def _ffprobe_keyframes(path: Path) -> tuple[int, ...]:
    info = g.ffprobe_packets(path)
    return tuple(i for i, p in enumerate(info) if "K" in p.get("flags", ""))


def test_keyframes_tracks_and_duration_read_as_ffprobe_reads_them(tmp_path: Path) -> None:
    audio = g.tone(tmp_path / "speech.wav", 6.0)
    video = g.clip(tmp_path / "v.mp4", seconds=4, size="96x64",
                   vcodec=("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"))  # B-frames
    result = render(tmp_path, audio, video, cfg=config(chunk_frames=50, batch_frames=8, encoders=2,
                                                       encoder_threads=1, tail_pieces=2))
    starts = (0, 50, 100, 125)  # two whole chunks, then the last one in two pieces
    assert result.stats["frames"] == 150 and result.stats["chunks"] == len(starts)
    assert mp4index.keyframes(result.path) == _ffprobe_keyframes(result.path) == starts
    index = mp4index.read(result.path)
    assert index is not None and index.has("vide") and index.has("soun") and not index.has("text")
    assert abs(index.duration_s - float(result.format["duration"])) < 0.03
    assert verify(result.path, "ffprobe", 30) == {"duration_s": round(index.duration_s, 6)}
    assert abs(_probe(result.path, "ffprobe", 30)["duration_s"] - index.duration_s) < 0.03
    segment = tmp_path / "work" / "seg_00001.mp4"
    assert mp4index.keyframes(segment) == _ffprobe_keyframes(segment) == (0,)


def test_a_result_without_sound_or_that_the_index_reader_declines_is_still_checked(tmp_path: Path) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=2, size="96x64", audio=True)
    silent = tmp_path / "silent.mp4"
    g.ff("-i", video, "-an", "-c", "copy", silent)
    with pytest.raises(EnvironmentFault, match="incomplete"):
        verify(silent, "ffprobe", 30)
    fragmented = tmp_path / "frag.mp4"
    g.ff("-i", video, "-c", "copy", "-movflags", "frag_keyframe+empty_moov", fragmented)
    assert mp4index.read(fragmented) is None  # ffprobe checks it instead
    assert abs(verify(fragmented, "ffprobe", 30)["duration_s"] - 2.0) < 0.1
    assert mp4index.keyframes(tmp_path / "missing.mp4") is None
