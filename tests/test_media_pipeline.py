"""The chunked renderer end to end with real ffmpeg: sync at every common rate, normalisation, looping."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
from renderkit import assert_in_sync, audio_seconds, config, render

from daemon.core.errors import JobRejected

SPEECH_S = 1.37  # deliberately not a whole number of frames at any rate


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    return g.tone(tmp_path / "speech.wav", SPEECH_S, ar=44100)


@pytest.mark.parametrize("rate,fps", [("24", 24.0), ("25", 25.0), ("30000/1001", 30000 / 1001), ("30", 30.0),
                                      ("60", 60.0)])
def test_output_is_in_sync_at_common_frame_rates(tmp_path: Path, speech: Path, rate: str, fps: float) -> None:
    video = g.clip(tmp_path / "v.mp4", seconds=2, fps=rate)
    result = render(tmp_path, speech, video, cfg=config(chunk_frames=16))
    assert_in_sync(result, audio_seconds(speech), fps)
    assert result.video["r_frame_rate"] == {"30000/1001": "30000/1001"}.get(rate, f"{rate}/1")
    assert result.stats["chunks"] == -(-result.stats["frames"] // 16)
    chunk_ends = [p.chunk for p in result.progress if p.phase == "render" and p.eta_s is not None]
    assert chunk_ends == list(range(1, result.stats["chunks"] + 1))
    within = [p for p in result.progress if p.phase == "render" and p.eta_s is None]  # news every batch
    assert len(within) >= len(chunk_ends), "no progress news within chunks"


def test_variable_frame_rate_video_becomes_constant_and_in_sync(tmp_path: Path, speech: Path) -> None:
    video = g.clip(tmp_path / "vfr.mp4", seconds=2, fps="30",
                   vf="select='not(eq(mod(n\\,7)\\,3))*not(eq(mod(n\\,5)\\,1))'", extra=("-fps_mode", "vfr"))
    result = render(tmp_path, speech, video)
    assert "variable frame rate" in result.stats["normalised"]
    assert_in_sync(result, audio_seconds(speech), 25.0)  # media.vfr_fps
    assert result.video["avg_frame_rate"] == "25/1"


def test_rotated_phone_video_comes_out_upright(tmp_path: Path, speech: Path) -> None:
    # the picture as seen: 96x160, white square top-left; stored turned, tagged to turn back
    g.ff("-f", "lavfi", "-i", "color=black:s=96x160:d=2,drawbox=x=0:y=0:w=30:h=30:color=white:t=fill",
         "-vf", "transpose=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", tmp_path / "stored.mp4")
    g.ff("-i", tmp_path / "stored.mp4", "-c", "copy", "-metadata:s:v", "rotate=270", tmp_path / "phone.mp4")
    result = render(tmp_path, speech, tmp_path / "phone.mp4")
    assert (result.video["width"], result.video["height"]) == (96, 160)
    first = g.decode_gray(result.path, 96, 160)[0]
    assert first[:20, :20].mean() > 200 and first[-20:, -20:].mean() < 40 and first[:20, -20:].mean() < 40
    assert_in_sync(result, audio_seconds(speech), 25.0)


def test_ten_bit_hevc_becomes_8bit_h264_high(tmp_path: Path, speech: Path) -> None:
    video = g.clip(tmp_path / "hdr.mkv", vcodec=("-c:v", "libx265", "-pix_fmt", "yuv420p10le",
                                                 "-x265-params", "log-level=error"))
    result = render(tmp_path, speech, video)
    assert result.video["profile"] == "High" and result.video["pix_fmt"] == "yuv420p"
    assert_in_sync(result, audio_seconds(speech), 25.0)


def test_prores_422_with_pcm_audio(tmp_path: Path) -> None:
    video = g.clip(tmp_path / "master.mov", vcodec=("-c:v", "prores_ks", "-profile:v", "3",
                                                    "-pix_fmt", "yuv422p10le"), acodec=("-c:a", "pcm_s24le"))
    result = render(tmp_path, video, video)  # its own PCM track drives it
    assert_in_sync(result, audio_seconds(video), 25.0)


def test_96khz_surround_speech_is_downmixed_and_resampled(tmp_path: Path) -> None:
    speech = g.tone(tmp_path / "speech.m4a", SPEECH_S, ar=96000, channels=6, codec=("-c:a", "aac"))
    result = render(tmp_path, speech, g.clip(tmp_path / "v.mp4"))
    assert result.audio["channels"] == 2 and result.audio["sample_rate"] == "48000"
    assert_in_sync(result, audio_seconds(speech), 25.0)


def test_odd_size_444_video_is_made_even(tmp_path: Path, speech: Path) -> None:
    video = g.clip(tmp_path / "odd.mp4", vf="scale=161:121",
                   vcodec=("-c:v", "libx264", "-pix_fmt", "yuv444p"))
    result = render(tmp_path, speech, video)
    assert (result.video["width"], result.video["height"]) == (160, 120)
    assert_in_sync(result, audio_seconds(speech), 25.0)


def test_still_image_becomes_a_static_video_of_audio_length(tmp_path: Path, speech: Path) -> None:
    result = render(tmp_path, speech, g.astronaut_png(tmp_path / "face.png"))
    frames = g.decode_gray(result.path, 512, 512)
    diff = np.abs(frames.astype(int) - frames[0])
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8  # a static picture: only codec noise
    assert_in_sync(result, audio_seconds(speech), 25.0)


def numbered(path: Path, count: int, fps: int = 25) -> Path:
    """A tiny clip whose frame k is flat grey 20 + 20k, so every output frame tells its source frame."""
    frames = np.repeat((20 + 20 * np.arange(count, dtype=np.uint8))[:, None], 64 * 48, 1)
    subprocess.run([*g.FF, "-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x48", "-r", str(fps), "-i", "-",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", "-g", "4",
                    str(path)], input=frames.tobytes(), check=True, timeout=60)
    return path


def source_indices(path: Path) -> list[int]:
    return [int(round((f.mean() - 20) / 20)) for f in g.decode_gray(path, 64, 48)]


def test_audio_longer_than_video_loops_ping_pong_by_default(tmp_path: Path, speech: Path) -> None:
    result = render(tmp_path, speech, numbered(tmp_path / "n.mp4", 8), cfg=config(chunk_frames=7))
    cycle = list(range(8)) + list(range(6, 0, -1))
    assert source_indices(result.path) == [cycle[j % 14] for j in range(result.stats["frames"])]
    assert result.stats["looped"] == "pingpong"
    assert_in_sync(result, audio_seconds(speech), 25.0)


def test_audio_longer_than_video_wraps_when_the_job_asks(tmp_path: Path, speech: Path) -> None:
    result = render(tmp_path, speech, numbered(tmp_path / "n.mp4", 8), options={"loop": "wrap"})
    assert source_indices(result.path) == [j % 8 for j in range(result.stats["frames"])]


def test_audio_shorter_than_video_trims_it(tmp_path: Path) -> None:
    speech = g.tone(tmp_path / "s.wav", 0.5)
    result = render(tmp_path, speech, numbered(tmp_path / "n.mp4", 11 + 9))
    assert result.stats["frames"] < 20 and result.stats["looped"] is None
    assert source_indices(result.path) == list(range(result.stats["frames"]))
    assert_in_sync(result, audio_seconds(speech), 25.0)


def test_speech_taken_from_a_video_file(tmp_path: Path) -> None:
    talk = g.clip(tmp_path / "talk.mp4", seconds=SPEECH_S)
    result = render(tmp_path, talk, g.clip(tmp_path / "presenter.mp4", seconds=1))
    assert_in_sync(result, audio_seconds(talk), 25.0)


def test_truncated_faststart_video_is_rejected_by_frame_count(tmp_path: Path) -> None:
    full = g.clip(tmp_path / "full.mp4", seconds=4, size="320x240", extra=("-movflags", "+faststart"))
    data = full.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    speech = g.tone(tmp_path / "s.wav", 3.5)
    with pytest.raises(JobRejected) as info:
        render(tmp_path, speech, tmp_path / "cut.mp4")
    assert info.value.code == "video_truncated"
    assert "only" in str(info.value) and "of its 100 frames" in str(info.value)


def test_interlaced_video_is_deinterlaced_when_ffmpeg_has_bwdif(tmp_path: Path, speech: Path) -> None:
    from daemon.worker.media.decoder import filter_graph, has_filter
    from daemon.worker.media.plan import make_plan
    from daemon.worker.media.probe import probe

    video = g.clip(tmp_path / "tv.mp4", vf="setfield=tff",
                   extra=("-flags", "+ildct+ilme", "-x264-params", "tff=1"))
    info = probe(video, config().media)
    plan = make_plan(info, 1.0, config().media, None, {})
    assert info.video is not None and info.video.interlaced and plan.deinterlace
    assert filter_graph(plan, "ffmpeg").startswith("bwdif,") == has_filter("ffmpeg", "bwdif")
    result = render(tmp_path, speech, video)
    assert "interlaced" in result.stats["normalised"]
    assert_in_sync(result, audio_seconds(speech), 25.0)


def test_video_whose_pictures_cannot_be_decoded_is_rejected_as_unreadable(tmp_path: Path,
                                                                           speech: Path) -> None:
    from dataclasses import replace

    from daemon.core.config import Config, MediaConfig

    video = g.clip(tmp_path / "v.mp4", audio=False, extra=("-movflags", "+faststart"))
    broken = tmp_path / "broken.mp4"  # keep the container and its index (in front), wipe every picture
    data = bytearray(video.read_bytes())
    mdat = data.find(b"mdat")
    data[mdat + 4:] = bytes(len(data) - mdat - 4)
    broken.write_bytes(bytes(data))
    cfg = Config(media=replace(MediaConfig(), chunk_frames=16))
    with pytest.raises(JobRejected) as info:
        render(tmp_path, speech, broken, cfg=cfg)
    assert info.value.code == "media_unreadable" and "cannot be decoded" in str(info.value)
