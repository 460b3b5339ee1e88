"""The watchdog as a real process: READY and WATCHDOG pings to a real notify socket, status file,
clean exit on SIGTERM, exit 78 on a configuration error.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon.core import atomic

REPO = Path(__file__).resolve().parents[1]
# until `lipsyncd watchdog` exists in daemon.cli, start the role's own entry point
LAUNCH = "import sys; from daemon.sentinel.role import main; sys.exit(main(sys.argv[1:]))"


def spawn(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", LAUNCH, "--config", str(config)], cwd=REPO, text=True,
                            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_watchdog_process_notifies_systemd_and_stops_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "share"
    for name in ("inbox", "staging", "processing", "done", "failed", ".lipsyncd"):
        (root / name).mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text(f"[share]\nroot = '{root}'\n[watchdog]\ninterval_s = 0.2\nprocess_manager = 'none'\n"
                      "gpu_check = false\n")
    folder = tempfile.mkdtemp(prefix="wdn", dir="/tmp")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    proc = spawn(config, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    try:
        messages = [sock.recv(4096).decode() for _ in range(4)]
        assert messages[0].startswith("READY=1\nSTATUS=watching")
        assert all(m.startswith("WATCHDOG=1\nSTATUS=") for m in messages[1:])
        status_file = root / ".lipsyncd" / "roles" / "watchdog.json"
        deadline = time.monotonic() + 5
        while not status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        status = atomic.read_json(status_file)
        assert status["pid"] == proc.pid and status["share_ok"] is True and status["manager"] == "none"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert rest and rest[-1] == "STOPPING=1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_configuration_error_exits_78_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[alerts.dingtalk]\nper_minute = 25\n")  # the robot allows 20/min
    proc = spawn(config, {})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 78
    assert "alerts.dingtalk.per_minute" in out and "at most 18" in out
