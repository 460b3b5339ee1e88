"""Stall → restart latency with a real supervisord and a stand-in worker that is SIGSTOPped mid-job.

    python bench/sentinel_restart.py --limit 2 --interval 0.5 --rounds 5
Reports, per round, seconds from SIGSTOP to the restart request and from the request to the first
heartbeat of the new process (supervisord: stopwaitsecs=1, startsecs=1).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from test_supervisor_restart import CONF, PROGRAM, STAND_IN, free_port  # noqa: E402

from daemon.core import heartbeat  # noqa: E402
from daemon.core.config import load_config  # noqa: E402
from daemon.sentinel.role import Role  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=float, default=2.0, help="watchdog.chunk_limit_s")
    parser.add_argument("--interval", type=float, default=0.5, help="watchdog.interval_s")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bsr", dir="/tmp"))
    root = tmp / "share"
    for name in ("inbox", "staging", "processing", "done", "failed", ".lipsyncd"):
        (root / name).mkdir(parents=True)
    (tmp / "stand_in.py").write_text(STAND_IN)
    sock = tmp / "s.sock"
    (tmp / "sv.conf").write_text(CONF.format(sock=sock, dir=tmp, repo=REPO, port=free_port(),
                                             command=f"{sys.executable} {tmp / 'stand_in.py'} {root}"))
    sv = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-c", str(tmp / "sv.conf")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp / "config.toml").write_text(
        f"[share]\nroot = '{root}'\n[general]\nhost_name = 'h1'\n[watchdog]\ngpu_check = false\n"
        f"process_manager = 'supervisord'\nsupervisord_url = 'unix://{sock}'\n"
        f"supervisord_program = '{PROGRAM}'\nchunk_limit_s = {args.limit}\nloading_limit_s = 30\n"
        f"interval_s = {args.interval}\nmax_restarts = 100\nrestart_window_min = 0.01\n")
    beat_path = root / ".lipsyncd" / "workers" / "h1--gpu0.json"
    detect: list[float] = []
    back: list[float] = []
    role = None
    try:
        while not sock.exists():
            time.sleep(0.05)
        role = Role(load_config(str(tmp / "config.toml"), env={}), env={})
        for _ in range(args.rounds):
            while (b := heartbeat.read(beat_path)) is None or time.time() - b.progress_at > 0.5 \
                    or (v := role.manager.view("gpu0")) is None or v.state.value != "RUNNING":
                time.sleep(0.05)
            pid = b.pid
            role.step()
            os.kill(pid, signal.SIGSTOP)
            stopped = time.monotonic()
            watch = role.patrol.workers.watches["gpu0"]
            before = watch.restart_at
            while watch.restart_at == before:
                role.step()
                time.sleep(args.interval)
            requested = time.monotonic()
            while (b := heartbeat.read(beat_path)) is None or b.pid == pid:
                role.step()
                time.sleep(0.02)
            detect.append(requested - stopped)
            back.append(time.monotonic() - requested)
            print(f"round: stall noticed + restart requested after {detect[-1]:.2f} s; "
                  f"new process beating {back[-1]:.2f} s later")
    finally:
        if role is not None:
            role.close()
        sv.terminate()
        sv.wait(30)
    print(f"limit={args.limit} s interval={args.interval} s rounds={args.rounds}: SIGSTOP→restart request "
          f"median {statistics.median(detect):.2f} s (max {max(detect):.2f}); request→fresh heartbeat median "
          f"{statistics.median(back):.2f} s (max {max(back):.2f})")


if __name__ == "__main__":
    main()
