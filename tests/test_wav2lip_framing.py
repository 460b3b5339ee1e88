"""Framing as upstream inference.py does it: the presenter's frame rate is kept (mel windows stepped by
80/fps), a ticket can force a rate (`fps`), fix the face box (`face_box`) or restrict the work (`crop`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mediagen as g
import numpy as np
import pytest
import torch
from renderkit import Result, assert_in_sync, audio_seconds, config, render
from test_wav2lip_model import realistic_random_weights

from daemon.core import ticket
from daemon.core.config import MediaConfig, Wav2LipEngineConfig
from daemon.core.errors import JobRejected
from daemon.worker.engines.wav2lip import Wav2LipEngine
from daemon.worker.media.plan import make_plan
from daemon.worker.media.probe import probe

SPEECH_S = 0.77  # not a whole number of frames at any of the rates below


@pytest.fixture(scope="module")
def w2l_config(tmp_path_factory: pytest.TempPathFactory) -> Wav2LipEngineConfig:
    path = tmp_path_factory.mktemp("w2l") / "wav2lip.pth"
    torch.save({"state_dict": realistic_random_weights(seed=3)}, path)
    return Wav2LipEngineConfig(checkpoint=str(path), batch_size=8, precision="fp32")


def parse(extra: str) -> dict:
    raw = f'audio = "a.wav"\nvideo = "v.mp4"\n{extra}\n'.encode()
    return ticket.parse(raw, "t.toml", allowed_engines=("copy", "wav2lip"), max_files=10, nested=False).options


def test_ticket_framing_keys_are_read_and_bad_values_are_named() -> None:
    assert parse("fps = 30\nface_box = [10, 100, 20, 90]\ncrop = [0, -1, 100, -1]") == {
        "fps": 30.0, "face_box": [10, 100, 20, 90], "crop": [0, -1, 100, -1]}
    for bad, key in [("fps = 0", "fps"), ('fps = "30"', "fps"), ("face_box = [1, 2, 3]", "face_box"),
                     ("face_box = [100, 10, 0, 50]", "face_box"), ("face_box = [0, -1, 0, 50]", "face_box"),
                     ("crop = [0, 1.5, 0, 2]", "crop"), ("crop = [-1, 10, 0, 10]", "crop")]:
        with pytest.raises(JobRejected) as info:
            parse(bad)
        assert info.value.code == "ticket_bad_value" and f"'{key}'" in str(info.value), bad


@pytest.mark.parametrize("rate,fps", [("25", 25.0), ("30", 30.0), ("30000/1001", 30000 / 1001), ("50", 50.0),
                                      ("60", 60.0)])
def test_wav2lip_keeps_the_presenters_rate_and_a_ticket_can_force_one(
        tmp_path: Path, rate: str, fps: float) -> None:
    info = probe(g.clip(tmp_path / "v.mp4", seconds=1, fps=rate, audio=False), MediaConfig())
    kept = make_plan(info, 10.0, MediaConfig(), Wav2LipEngine.fps, {})
    assert kept.fps == pytest.approx(fps) and kept.frames == round(10.0 * fps)
    forced = make_plan(info, 10.0, MediaConfig(), Wav2LipEngine.fps, {"fps": 25.0})
    assert forced.fps_text == "25/1" and forced.frames == 250
    assert make_plan(info, 10.0, MediaConfig(fps=24.0), Wav2LipEngine.fps, {}).fps_text == "24/1"


def test_a_still_is_rendered_at_25_fps_or_at_the_tickets_rate(tmp_path: Path) -> None:
    info = probe(g.astronaut_png(tmp_path / "face.png"), MediaConfig())
    assert make_plan(info, 2.0, MediaConfig(), Wav2LipEngine.fps, {}).fps_text == "25/1"  # upstream --fps
    assert make_plan(info, 2.0, MediaConfig(), Wav2LipEngine.fps, {"fps": 30}).frames == 60


def wav2lip_render(tmp_path: Path, w2l_config: Wav2LipEngineConfig, fps: int,
                   options: dict | None = None) -> tuple[Result, float]:
    speech = g.tone(tmp_path / "speech.wav", SPEECH_S, ar=16000)
    video = g.astronaut_clip(tmp_path / "face.mp4", seconds=1.0, fps=fps, size=128)
    engine = Wav2LipEngine(w2l_config, "cpu")
    result = render(tmp_path, speech, video, engine=engine, options=options, cfg=config(chunk_frames=16))
    return result, audio_seconds(speech)


def check_rate(tmp_path: Path, w2l_config: Wav2LipEngineConfig, fps: int) -> None:
    result, audio_s = wav2lip_render(tmp_path, w2l_config, fps)
    assert result.video["r_frame_rate"] == f"{fps}/1" and result.stats["fps"] == fps
    assert int(result.video["nb_read_packets"]) == round(audio_s * fps) == result.stats["frames"]
    assert result.stats["faces_missing"] == 0  # the generator ran on every frame
    assert "quality may suffer" in result.stats["warnings"][0]  # report.json: boxes were not S3FD's
    assert_in_sync(result, audio_s, fps)


def test_a_30_fps_presenter_stays_30_fps_through_the_wav2lip_engine_in_sync(
        tmp_path: Path, w2l_config: Wav2LipEngineConfig) -> None:
    check_rate(tmp_path, w2l_config, 30)


@pytest.mark.slow
@pytest.mark.parametrize("fps", [25, 50, 60])
def test_every_common_rate_stays_through_the_wav2lip_engine_in_sync(
        tmp_path: Path, w2l_config: Wav2LipEngineConfig, fps: int) -> None:
    check_rate(tmp_path, w2l_config, fps)


def test_a_ticket_fps_forces_the_output_rate_through_the_wav2lip_engine(
        tmp_path: Path, w2l_config: Wav2LipEngineConfig) -> None:
    result, audio_s = wav2lip_render(tmp_path, w2l_config, 50, {"fps": 25.0})
    assert result.video["r_frame_rate"] == "25/1"
    assert_in_sync(result, audio_s, 25.0)


def test_mel_windows_step_by_80_over_the_plans_rate(w2l_config: Wav2LipEngineConfig) -> None:
    engine = Wav2LipEngine(replace(w2l_config), "cpu")
    wav = np.zeros(16000 * 2, np.float32)
    for fps in (25.0, 30.0, 50.0, 60.0):
        starts = engine.prepare(wav, fps, int(2 * fps)).starts
        assert starts.tolist() == [min(int(i * 80.0 / fps), 161 - 16) for i in range(int(2 * fps))]


def test_a_face_box_bypasses_detection_and_only_that_box_changes(
        tmp_path: Path, w2l_config: Wav2LipEngineConfig) -> None:
    speech = g.tone(tmp_path / "speech.wav", SPEECH_S, ar=16000)
    video = g.clip(tmp_path / "noface.mp4", seconds=1, fps="25", size="160x120", audio=False)
    engine = Wav2LipEngine(replace(w2l_config, composite="paste"), "cpu")
    box = {"face_box": [30, 90, 50, 110]}  # top, bottom, left, right: a region with no face in it
    lossless = config(crf=0)  # x264 at crf 0 is lossless: any pixel that differs was changed by the engine
    result = render(tmp_path, speech, video, engine=engine, options=box, cfg=lossless)
    assert result.stats["faces_missing"] == 0 and not result.stats["face_cache_hit"]
    assert result.stats["warnings"] == []  # the producer's box, not a detector's: nothing to warn about
    assert not list((tmp_path / ".lipsyncd").rglob("*.npy"))  # no face pass ran: nothing cached
    plain = render(tmp_path / "plain", speech, video, cfg=lossless)  # the copy engine
    out, ref = (g.decode_rgb(r.path, 160, 120).astype(int) for r in (result, plain))
    changed = np.abs(out - ref).max(axis=3)
    assert (changed[:, 30:90, 50:110].mean(axis=(1, 2)) > 10).all()  # every frame, inside the box
    changed[:, 30:90, 50:110] = 0
    assert changed.max() == 0  # exactly the box, as given: no pads, no smoothing


def test_a_crop_makes_the_output_that_region_and_the_box_is_inside_it(
        tmp_path: Path, w2l_config: Wav2LipEngineConfig) -> None:
    speech = g.tone(tmp_path / "speech.wav", SPEECH_S, ar=16000)
    video = g.clip(tmp_path / "wide.mp4", seconds=1, fps="25", size="320x120", audio=False)
    whole = render(tmp_path / "whole", speech, video)
    region = render(tmp_path / "crop", speech, video, options={"crop": [20, 100, 160, -1]})
    assert (region.video["width"], region.video["height"]) == (160, 80)
    a = g.decode_rgb(whole.path, 320, 120)[:, 20:100, 160:].astype(int)
    b = g.decode_rgb(region.path, 160, 80).astype(int)
    assert np.abs(a - b).mean() < 2.0  # the same pixels, encoded twice
    assert_in_sync(region, audio_seconds(speech), 25.0)
    with pytest.raises(JobRejected, match="face_box"):
        render(tmp_path / "bad", speech, video, engine=Wav2LipEngine(w2l_config, "cpu"),
               options={"crop": [20, 100, 160, -1], "face_box": [0, 90, 0, 50]})  # 90 > the crop's 80
