"""The watchdog as a real process, started the way production starts it (`python -m daemon watchdog`):
READY and WATCHDOG pings to a real notify socket, status file, clean exit on SIGTERM; on a configuration
error it names the key and keeps watching on the fallback config, while a role that cannot run exits 78.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from daemon.core import atomic

REPO = Path(__file__).resolve().parents[1]


def spawn(config: Path, env: dict[str, str], *extra: str, role: str = "watchdog") -> subprocess.Popen[str]:
    """`python -m daemon --config CONFIG [extra...] ROLE`: the same entry point as `lipsyncd ROLE`."""
    return subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config), *extra, role], cwd=REPO,
                            text=True, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def drain(sock: socket.socket, into: list[str]) -> None:
    """Every datagram up to STOPPING=1 (or 30 s of silence)."""
    sock.settimeout(30)
    try:
        while not into or into[-1] != "STOPPING=1":
            into.append(sock.recv(4096).decode())
    except (TimeoutError, OSError):
        pass


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
        rest: list[str] = []  # keep reading, as systemd does (a full queue only costs pings)
        reader = threading.Thread(target=drain, args=(sock, rest), daemon=True)
        reader.start()
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
        reader.join(30)
        assert rest and rest[-1] == "STOPPING=1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_configuration_error_is_named_and_the_watchdog_keeps_watching_while_intake_exits_78(
        tmp_path: Path) -> None:
    root = tmp_path / "share"
    for name in ("inbox", "staging", "processing", "done", "failed", ".lipsyncd"):
        (root / name).mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text("[alerts.dingtalk]\nper_minute = 25\n")  # the robot allows 20/min
    intake = spawn(config, {}, "--root", str(root), role="intake")
    out, _ = intake.communicate(timeout=60)
    assert intake.returncode == 78
    assert "alerts.dingtalk.per_minute" in out and "at most 18" in out, out
    proc = spawn(config, {}, "--root", str(root))
    try:
        status_file = root / ".lipsyncd" / "roles" / "watchdog.json"
        deadline = time.monotonic() + 60
        while not (status_file.exists() and list(root.glob(".lipsyncd/logs/*/alerts.jsonl"))) \
                and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[0]  # still watching, on the fallback config
        assert atomic.read_json(status_file)["pid"] == proc.pid
        [journal] = root.glob(".lipsyncd/logs/*/alerts.jsonl")
        [alert] = [a for line in journal.read_text().splitlines() if (a := json.loads(line))["key"] == "config"]
        assert "alerts.dingtalk.per_minute" in alert["text"] and alert["severity"] == "critical", alert
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        out, _ = proc.communicate()
        assert "alerts.dingtalk.per_minute" in out and "at most 18" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
