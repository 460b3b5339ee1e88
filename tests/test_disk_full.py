"""A full disk under the encoder is the machine's fault: the job goes back to the queue, never to failed/
blaming the producer's media (found by the fault runner: ENOSPC read as "could not be decoded")."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import Roles, drop_job, entries, env_for, wait_for

from daemon.core.config import Config
from daemon.core.errors import EnvironmentFault
from daemon.worker.engines.registry import load_engine
from daemon.worker.pipeline import ChunkedRenderer
from daemon.worker.render import RenderRequest


def test_encoder_refused_by_a_full_device_is_an_environment_fault(tmp_path: Path, media_dir: Path) -> None:
    # /dev/full answers every write with ENOSPC: ffmpeg fails exactly as on a full share
    request = RenderRequest(job_id="j", attempt=1, audio=media_dir / "a.wav", video=media_dir / "v.mp4",
                            output=Path("/dev/full"), workdir=tmp_path, engine="copy", options={})
    config = Config()
    renderer = ChunkedRenderer(config, tmp_path / "internal", load_engine("copy", config))
    with pytest.raises(EnvironmentFault, match="No space left on device"):
        renderer.render(request, lambda p: None, lambda: False)


@pytest.fixture
def tiny_share(tmp_path: Path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_share_full_during_an_encode_requeues_the_job(tiny_share: Path, media_dir: Path, roles: Roles) -> None:
    """inputs (2.2 MB) fit on the 3 MB share, the 3.5 MB result does not"""
    root = tiny_share / "share"
    root.mkdir()
    # the disk guard would (rightly) pause intake on a 3 MB share; this test is about the worker
    env = env_for(root, LIPSYNCD_INTAKE_PAUSE_BELOW_FREE_GB="0", LIPSYNCD_INTAKE_RESUME_ABOVE_FREE_GB="0")
    roles.start("intake", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "share folders")
    drop_job(root, "big", media_dir / "talk.wav", media_dir / "talk.mp4")
    wait_for(lambda: len(entries(root / "staging")) == 1, 30, "the job in staging/")
    worker = roles.start("worker", env=env)
    assert worker.wait(timeout=120) == 70, roles.log_of(worker)
    assert entries(root / "failed") == [] and entries(root / "done") == []
    [job] = entries(root / "staging")
    assert "No space left on device" in (root / "staging" / job / "job.log").read_text()
    assert json.loads((root / "staging" / job / "attempt.json").read_text())["attempt"] == 1
    assert not (root / "staging" / job / "big.mp4").exists()


@pytest.mark.parametrize("role", ["worker", "intake"])
def test_a_role_started_on_a_full_share_exits_as_an_environment_fault_not_a_bug(
        tiny_share: Path, roles: Roles, role: str) -> None:
    from daemon.core.share import Share

    root = tiny_share / "share"
    root.mkdir()
    Share(root).prepare()
    errors_log = root / ".lipsyncd" / "logs" / socket.gethostname() / "errors.log"  # this host's own
    errors_log.parent.mkdir(parents=True, exist_ok=True)
    errors_log.touch()
    with open(tiny_share / "ballast", "wb") as fh:  # fill the share to the last byte
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    proc = roles.start(role, env=env_for(root))
    assert proc.wait(timeout=60) == 70
    log = roles.log_of(proc)
    assert "the share is full (No space left on device)" in log, log
    assert "bug" not in log and "--- Logging error ---" not in log, log
    assert log.count("cannot write") <= 1, log  # errors.log on the full share: one line, no tracebacks
