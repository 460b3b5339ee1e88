"""The shipped process-manager files: systemd units pass `systemd-analyze verify`, and the supervisord
config starts every role (one worker per GPU with its own CUDA_VISIBLE_DEVICES) and serves XML-RPC.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from daemon.sentinel.managers import pick_manager
from daemon.sentinel.managers.supervision import ProgramState
from daemon.sentinel.managers.supervisord import Supervisord

REPO = Path(__file__).resolve().parents[1]
BINARY = "/opt/lipsyncd/venv/bin/lipsyncd"
SUPERVISORD = Path(sys.executable).parent / "supervisord"

RECORDER = """#!{python}
import json, os, sys, time
out = os.path.join({folder!r}, f"{{os.getpid()}}.json")
keys = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SUPERVISOR_SERVER_URL",
        "LIPSYNCD_WATCHDOG_PROCESS_MANAGER")
with open(out, "w") as fh:
    json.dump({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keys}}}}, fh)
time.sleep(600)
"""


def unit_text(name: str) -> str:
    return (REPO / "systemd" / name).read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify_clean(tmp_path: Path) -> None:
    for path in (REPO / "systemd").iterdir():
        if path.suffix in (".service", ".target"):
            # the binary is installed later; everything else is verified as shipped
            (tmp_path / path.name).write_text(path.read_text().replace(BINARY, "/bin/true"))
    shutil.copy(tmp_path / "lipsyncd-worker@.service", tmp_path / "lipsyncd-worker@0.service")
    units = sorted(str(p) for p in tmp_path.iterdir() if not p.name.endswith("@.service"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def test_worker_unit_keeps_the_gpu_usable_and_does_not_loop_on_config_errors() -> None:
    worker = unit_text("lipsyncd-worker@.service")
    for line in ("Type=notify", "Environment=CUDA_VISIBLE_DEVICES=%i",
                 "Environment=CUDA_DEVICE_ORDER=PCI_BUS_ID", "Restart=on-failure",
                 "RestartPreventExitStatus=78", "RequiresMountsFor=/srv/lipsyncd",
                 "DeviceAllow=/dev/nvidiactl rw", "DeviceAllow=/dev/nvidia-uvm rw",
                 "DeviceAllow=char-nvidia-frontend rw", "DeviceAllow=char-nvidia-caps rw",
                 "PartOf=lipsyncd.target",
                 f"ExecStart={BINARY} worker --gpu %i --config /etc/lipsyncd/config.toml"):
        assert line in worker.splitlines(), line
    assert "PrivateDevices=yes" not in worker.splitlines()  # it would hide /dev/nvidia*
    assert re.search(r"^WatchdogSec=\d+", worker, re.M)
    for name in ("lipsyncd-intake.service", "lipsyncd-watchdog.service"):
        text = unit_text(name)
        assert "Type=notify" in text and "RestartPreventExitStatus=78" in text and "WatchdogSec=" in text


@pytest.mark.skipif(not SUPERVISORD.exists(), reason="supervisord not installed in the venv")
def test_shipped_supervisord_config_runs_every_role_and_serves_xmlrpc(tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="svf", dir="/tmp"))
    records = tmp_path / "records"
    records.mkdir()
    recorder = tmp_path / "lipsyncd"
    recorder.write_text(RECORDER.format(python=sys.executable, folder=str(records)))
    recorder.chmod(0o755)
    text = (REPO / "supervisor" / "lipsyncd.conf").read_text()
    text = (text.replace(BINARY, str(recorder)).replace("/run/lipsyncd", str(short))
            .replace("/var/log/lipsyncd", str(tmp_path)).replace("numprocs=1", "numprocs=2"))
    # the test runs as root without a lipsyncd user: drop only the privilege switch
    text = re.sub(r"^(user|chown)=lipsyncd.*$", "", text, flags=re.M)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(text)
    proc = subprocess.Popen([str(SUPERVISORD), "-c", str(conf)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while len(list(records.glob("*.json"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        seen = [json.loads(p.read_text()) for p in records.glob("*.json")]
        workers = sorted((r["argv"][2], r["env"]["CUDA_VISIBLE_DEVICES"], r["env"]["CUDA_DEVICE_ORDER"])
                         for r in seen if r["argv"][0] == "worker")
        assert workers == [("0", "0", "PCI_BUS_ID"), ("1", "1", "PCI_BUS_ID")]
        [watchdog] = [r for r in seen if r["argv"][0] == "watchdog"]
        assert [r["argv"][0] for r in seen].count("intake") == 1
        env = {k: v for k, v in watchdog["env"].items() if v is not None}
        assert env["SUPERVISOR_SERVER_URL"] == f"unix://{short}/supervisor.sock"
        # the watchdog, started like that, finds supervisord and both workers by itself
        from test_sentinel_patrol import make_config

        config = make_config(tmp_path / "share", process_manager="auto")
        manager = pick_manager(config, {**env, "SUPERVISOR_ENABLED": "1"})
        assert isinstance(manager, Supervisord) and manager.workers() == ["gpu0", "gpu1"]
        view = manager.view("gpu1")
        assert view is not None and view.state in (ProgramState.STARTING, ProgramState.RUNNING)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(short, ignore_errors=True)
        for rec in records.glob("*.json"):
            pid = int(rec.stem)
            assert not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text()
