"""The decoder's command lines, built with ffmpeg-python: the argv is pinned, and real ffmpeg runs it."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import mediagen as g
import numpy as np
import pytest

from daemon.core.config import MediaConfig
from daemon.core.errors import JobRejected
from daemon.worker.media import commandline as cl
from daemon.worker.media.decoder import Sampling, decode_argv, speech_argv
from daemon.worker.media.plan import Plan, make_plan
from daemon.worker.media.probe import probe

CFG = MediaConfig()
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
HEAD = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats"]
TAIL = ["-an", "-dn", "-fps_mode", "passthrough"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return g.clip(tmp_path_factory.mktemp("cl") / "v.mp4", seconds=1, fps="30", size="160x120", audio=False)


def plan_for(path: Path, **options: object) -> tuple[Plan, object]:
    info = probe(path, CFG)
    return make_plan(info, 1.0, CFG, None, dict(options)), info


def test_forward_decode_argv_is_pinned(clip: Path) -> None:
    plan, info = plan_for(clip)
    assert decode_argv(CFG, info, plan, 0, 30) == [
        *HEAD, "-format_whitelist", "mov,matroska,avi", "-protocol_whitelist", "file", "-i", f"file:{clip}",
        "-filter_complex", "[0:0]fps=30/1[s0];[s0]scale=160:120:flags=bicubic[s1];[s1]setsar=1[s2];"
        "[s2]format=yuv420p[s3]", "-map", "[s3]", "-f", "rawvideo", *TAIL, "-frames:v", "30",
        "-pix_fmt", "yuv420p", "-sn", "pipe:1"]


def test_seek_crop_and_face_samples_argv_is_pinned(clip: Path) -> None:
    plan, info = plan_for(clip, crop=[10, 90, 20, 120], max_height=40)
    argv = decode_argv(CFG, info, plan, 15, 3, Sampling(5, plan.width, plan.height, "gray"))
    assert argv[argv.index("-ss") + 1] == "0.500000" and argv.index("-ss") < argv.index("-i")
    assert argv[argv.index("-filter_complex") + 1] == (
        "[0:0]fps=30/1[s0];[s0]crop=100:80:20:10:exact=1[s1];[s1]select=not(mod(n\\,5))[s2];"
        "[s2]scale=50:40:flags=bicubic[s3];[s3]setsar=1[s4];[s4]format=gray[s5]")
    assert argv[argv.index("-pix_fmt") + 1] == "gray" and argv[argv.index("-frames:v") + 1] == "3"


def test_still_argv_reads_one_picture_with_the_image_demuxer_only(tmp_path: Path) -> None:
    plan, info = plan_for(g.astronaut_png(tmp_path / "face.png"))
    argv = decode_argv(CFG, info, plan, 0, 1)
    assert argv[len(HEAD):argv.index("-i")] == ["-f", "image2", "-format_whitelist", "image2",
                                                 "-pattern_type", "none", "-protocol_whitelist", "file"]
    assert "fps=" not in argv[argv.index("-filter_complex") + 1]


def test_the_crop_decodes_exactly_that_region(clip: Path) -> None:
    full, info = plan_for(clip)
    cropped, _ = plan_for(clip, crop=[10, 90, 20, -1])
    assert (cropped.width, cropped.height, cropped.crop) == (140, 80, (20, 10, 140, 80))

    def frames(plan: Plan) -> np.ndarray:
        gray = Sampling(1, plan.width, plan.height, "gray")
        run = subprocess.run(decode_argv(CFG, info, plan, 0, 5, gray), capture_output=True,
                             timeout=60, check=True)
        return np.frombuffer(run.stdout, np.uint8).reshape(5, plan.height, plan.width)

    assert np.array_equal(frames(cropped), frames(full)[:, 10:90, 20:160])


def test_a_crop_outside_the_picture_is_the_producers_mistake(clip: Path) -> None:
    with pytest.raises(JobRejected) as info:
        plan_for(clip, crop=[200, 300, 0, 50])
    assert info.value.code == "region_outside" and "160x120" in str(info.value)
    assert plan_for(clip, crop=[0, -1, 0, -1])[0].crop is None  # the whole picture: no crop filter


def test_the_builder_serves_other_command_lines_too() -> None:
    """What an encoder would build: two inputs, a filter on one, explicit output options."""
    video = cl.apply(cl.source("pipe:0", f="rawvideo", pix_fmt="yuv420p", s="64x48", framerate="25"),
                     [cl.Filter("format", ("yuv420p",))])
    out = cl.output(video, "file:/tmp/x.mp4", {"c:v": "libx264", "crf": 20})
    assert cl.argv("ffmpeg", out, head=["-y"]) == [
        "ffmpeg", "-y", "-f", "rawvideo", "-framerate", "25", "-pix_fmt", "yuv420p", "-s", "64x48", "-i",
        "pipe:0", "-filter_complex", "[0]format=yuv420p[s0]", "-map", "[s0]", "-c:v", "libx264", "-crf", "20",
        "file:/tmp/x.mp4"]
    assert cl.chain_text([cl.Filter("scale", (64, 48), {"flags": "bicubic"}), cl.Filter("setsar", (1,))]) \
        == "scale=64:48:flags=bicubic,setsar=1"


def test_plan_crop_survives_the_json_round_trip_the_face_pass_uses(clip: Path) -> None:
    plan, _ = plan_for(clip, crop=[10, 90, 20, 120])
    again = Plan(**{**plan.to_json(), "width": 50})
    assert again.crop == plan.crop and replace(again, width=plan.width) == plan


def test_speech_argv_is_pinned_and_decodes_16k_mono_float(tmp_path: Path) -> None:
    speech = g.tone(tmp_path / "s.wav", 0.5, ar=44100, channels=2)
    info = probe(speech, CFG)
    dest = tmp_path / "16k.wav"
    argv = speech_argv(CFG, info, dest)
    assert argv == [*HEAD, "-y", "-format_whitelist", "aac,avi,flac,matroska,mov,mp3,ogg,wav",
                    "-protocol_whitelist", "file", "-i", f"file:{speech}", "-map", "0:a:0", "-f", "wav", "-ac", "1",
                    "-ar", "16000", "-c:a", "pcm_f32le", "-dn", "-fflags", "+bitexact", "-sn", "-t", "3601.000",
                    "-vn", f"file:{dest}"]
    subprocess.run(argv, check=True, timeout=60)
    stream = g.stream(g.ffprobe(dest), "audio")
    assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == ("pcm_f32le", "16000", 1)
