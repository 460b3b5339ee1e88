"""Wrong checkpoint files are refused with a message naming what they appear to be; the worker stops (78)."""

from __future__ import annotations

import functools
import io
import random
from pathlib import Path

import pytest
import torch

from daemon.core.config import Wav2LipEngineConfig
from daemon.core.errors import EXIT_CONFIG, ConfigError
from daemon.worker.engines.wav2lip import Wav2LipEngine, check_checkpoint, check_detector, generator, s3fd


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return generator.Wav2Lip().state_dict()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, state: dict[str, torch.Tensor]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    out = {"legacy": root / "wav2lip.pth", "zip": root / "bare.pth", "s3fd": root / "s3fd.pth"}
    torch.save({"state_dict": state, "global_step": 1}, out["legacy"], _use_new_zipfile_serialization=False)
    torch.save(state, out["zip"])
    torch.save(s3fd.S3FD().state_dict(), out["s3fd"])
    return out


def truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 5])
    return dst


def test_official_dict_is_accepted_and_described(files: dict[str, Path]) -> None:
    ok, message = check_checkpoint(files["legacy"])
    assert ok and "Wav2Lip generator, 36,298,035 parameters" in message and "training checkpoint" in message


def test_s3fd_checkpoint_given_as_generator_is_named_as_s3fd(files: dict[str, Path]) -> None:
    ok, message = check_checkpoint(files["s3fd"])
    assert not ok
    assert "S3FD face-detector checkpoint" in message and "face_detector_checkpoint" in message


@pytest.mark.parametrize("kind", ["legacy", "zip"])
def test_truncated_download_is_named_as_truncated(kind: str, files: dict[str, Path], tmp_path: Path) -> None:
    ok, message = check_checkpoint(truncated(files[kind], tmp_path / "cut.pth"))
    assert not ok
    assert "truncated or corrupt download" in message and "416 MB" in message


def test_hd_variant_with_more_encoder_blocks_is_named_as_a_variant(
        state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    hd = dict(state)
    # a 288-px retrain adds an encoder/decoder stage; its first blocks keep the official names
    hd["face_encoder_blocks.7.0.conv_block.0.weight"] = torch.zeros(512, 512, 3, 3)
    hd["face_encoder_blocks.7.0.conv_block.0.bias"] = torch.zeros(512)
    hd["face_decoder_blocks.7.0.conv_block.0.weight"] = torch.zeros(1024, 512, 3, 3)
    path = tmp_path / "wav2lip_288.pth"
    torch.save({"state_dict": hd}, path)
    ok, message = check_checkpoint(path)
    assert not ok
    assert "8 face-encoder blocks instead of 7" in message and "HD/288" in message


def test_generator_with_other_layer_shapes_is_named_as_modified(
        state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    changed = dict(state)
    changed["face_encoder_blocks.0.0.conv_block.0.weight"] = torch.zeros(16, 6, 5, 5)
    path = tmp_path / "odd.pth"
    torch.save(changed, path)
    ok, message = check_checkpoint(path)
    assert not ok and "modified Wav2Lip generator" in message and "other shapes" in message


def test_syncnet_expert_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": {"face_encoder.0.conv_block.0.weight": torch.zeros(32, 15, 7, 7),
                               "audio_encoder.0.conv_block.0.weight": torch.zeros(32, 1, 3, 3)}}, path)
    ok, message = check_checkpoint(path)
    assert not ok and "SyncNet" in message


@pytest.mark.parametrize("content,expected", [
    (random.Random(0).randbytes(4096), "not a PyTorch checkpoint"),
    # seed 2's bytes made torch's unpickler raise IndexError("pop from empty list"), a crash before
    # every load failure counted as an unusable file
    (random.Random(2).randbytes(4096), "not a PyTorch checkpoint"),
    (b"<!DOCTYPE html><html><body>Sign in to continue</body></html>", "web page"),
    (b"", "empty (0 bytes)"),
])
def test_junk_files_are_named(content: bytes, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "wav2lip.pth"
    path.write_bytes(content)
    ok, message = check_checkpoint(path)
    assert not ok and expected in message and str(path) in message


def test_pickled_python_objects_are_refused_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module, not a state dict
    ok, message = check_checkpoint(path)
    assert not ok and "refusing to unpickle" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    ok, message = check_checkpoint(tmp_path / "nowhere.pth")
    assert not ok and "does not exist" in message


def test_detector_checks_accept_s3fd_and_name_a_generator_given_instead(files: dict[str, Path]) -> None:
    assert check_detector(files["s3fd"])[0]
    ok, message = check_detector(files["zip"])
    assert not ok and "Wav2Lip generator checkpoint" in message


def test_worker_start_with_wrong_checkpoint_is_a_config_error_naming_file_and_reason(
        files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as info:
        Wav2LipEngine(Wav2LipEngineConfig(checkpoint=str(files["s3fd"])), "cpu")
    text = str(info.value)
    assert text.startswith("engines.wav2lip.checkpoint: ") and str(files["s3fd"]) in text and "S3FD" in text
    assert EXIT_CONFIG == 78  # what the role's main returns for a ConfigError: no restart loop


def test_worker_start_without_checkpoint_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="engines.wav2lip.checkpoint is not set"):
        Wav2LipEngine(Wav2LipEngineConfig(), "cpu")


def test_worker_start_with_a_bad_detector_checkpoint_is_a_config_error(files: dict[str, Path]) -> None:
    config = Wav2LipEngineConfig(checkpoint=str(files["zip"]), face_detector_checkpoint=str(files["legacy"]))
    with pytest.raises(ConfigError, match="engines.wav2lip.face_detector_checkpoint: .*generator checkpoint"):
        Wav2LipEngine(config, "cpu")


@functools.cache
def _small_checkpoint(kind: str) -> bytes:
    """A real, small file of one container kind (a few tensors) to damage: cut short or bytes flipped."""
    buffer = io.BytesIO()
    torch.manual_seed(0)
    if kind == "script":
        torch.jit.save(torch.jit.script(torch.nn.Linear(4, 8)), buffer)
    else:
        state = {"a.weight": torch.randn(8, 4), "a.bias": torch.randn(8)}
        torch.save({"state_dict": state, "global_step": 3}, buffer, _use_new_zipfile_serialization=kind == "zip")
    return buffer.getvalue()


def junk(family: str, seed: int) -> bytes:
    """Seeded junk of one family: random bytes, random bytes behind a pickle or zip header, a real file
    cut short at a random length, or a real file with random bytes overwritten."""
    rng = random.Random(f"{family}:{seed}")
    if family == "random":
        return rng.randbytes(rng.randint(1, 8192))
    if family in ("pickle-header", "zip-header"):
        head = rng.choice([b"\x80\x02", b"\x80\x04\x95"]) if family == "pickle-header" else b"PK\x03\x04"
        return head + rng.randbytes(rng.randint(1, 4096))
    data = bytearray(_small_checkpoint(family.split("-")[0]))
    if family.endswith("-cut"):
        return bytes(data[: rng.randrange(1, len(data))])
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


FAMILIES = ["random", "pickle-header", "zip-header", "legacy-cut", "zip-cut", "legacy-flip", "zip-flip",
            "script-cut", "script-flip"]


def assert_refused_with_a_reason(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    ok, message = check_checkpoint(path)  # any other exception escaping here fails the test
    assert not ok and str(path) in message
    if not content.startswith((b"PK", b"\x80")):
        assert "not a PyTorch checkpoint" in message


@pytest.mark.parametrize("family", FAMILIES)
def test_seeded_junk_of_every_family_is_refused_with_a_reason(family: str, tmp_path: Path) -> None:
    for seed in range(5):
        assert_refused_with_a_reason(tmp_path / "wav2lip.pth", junk(family, seed))


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_fuzzed_junk_never_escapes_as_a_crash(family: str, tmp_path: Path) -> None:
    for seed in range(400):
        assert_refused_with_a_reason(tmp_path / "wav2lip.pth", junk(family, seed))
