"""Without an S3FD checkpoint the wav2lip engine works on calibrated offline boxes: doctor and report.json say so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, env_for

from daemon.core.config import Wav2LipEngineConfig
from daemon.worker.engines.wav2lip import Wav2LipEngine, generator, s3fd
from daemon.worker.engines.wav2lip.detection import NO_S3FD


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("w")
    torch.manual_seed(0)
    torch.save(generator.Wav2Lip().state_dict(), root / "wav2lip.pth")
    torch.save(s3fd.S3FD().state_dict(), root / "s3fd.pth")
    return {"generator": root / "wav2lip.pth", "s3fd": root / "s3fd.pth"}


def doctor_line(root: Path, name: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-m", "daemon", "doctor"], cwd=REPO, env=env_for(root, **env),
                          capture_output=True, text=True, timeout=300)
    for line in done.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        if rest.startswith(f"{name}: "):
            return f"{verdict} {rest[len(name) + 2:]}"
    raise AssertionError(f"no {name!r} line in:\n{done.stdout}{done.stderr}")


def test_doctor_warns_when_wav2lip_has_no_s3fd_checkpoint(root: Path, weights: dict[str, Path]) -> None:
    line = doctor_line(root, "face detector checkpoint", LIPSYNCD_WORKER_ENGINE="wav2lip",
                       LIPSYNCD_ENGINES_WAV2LIP_CHECKPOINT=str(weights["generator"]))
    assert line.startswith("WARN") and "quality may suffer" in line and "s3fd.pth" in line


def test_doctor_passes_the_detector_once_s3fd_is_supplied_and_is_quiet_without_wav2lip(
        root: Path, weights: dict[str, Path]) -> None:
    line = doctor_line(root, "face detector checkpoint", LIPSYNCD_WORKER_ENGINE="wav2lip",
                       LIPSYNCD_ENGINES_WAV2LIP_CHECKPOINT=str(weights["generator"]),
                       LIPSYNCD_ENGINES_WAV2LIP_FACE_DETECTOR_CHECKPOINT=str(weights["s3fd"]))
    assert line.startswith("PASS") and "S3FD face detector" in line
    assert doctor_line(root, "face detector checkpoint").startswith("SKIP")  # the copy engine: no wav2lip


def test_the_engine_carries_the_warning_for_report_json_only_without_s3fd(weights: dict[str, Path]) -> None:
    without = Wav2LipEngine(Wav2LipEngineConfig(checkpoint=str(weights["generator"])), "cpu")
    assert without.warnings == (NO_S3FD,) and "quality may suffer" in NO_S3FD
    with_s3fd = Wav2LipEngine(Wav2LipEngineConfig(checkpoint=str(weights["generator"]),
                                                  face_detector_checkpoint=str(weights["s3fd"])), "cpu")
    assert with_s3fd.warnings == ()
