"""How long one watchdog pass takes on a busy share: N staged jobs, M failed jobs, K worker heartbeats.

    python bench/sentinel_pass.py --staged 1000 --failed 5000 --workers 8 --passes 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.core import atomic, heartbeat  # noqa: E402
from daemon.core.config import load_config  # noqa: E402
from daemon.sentinel.managers.supervision import NoManager  # noqa: E402
from daemon.sentinel.role import Role  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--staged", type=int, default=1000)
    parser.add_argument("--failed", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--passes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "share"
        for name in ("inbox", "staging", "processing", "done", "failed", ".lipsyncd"):
            (root / name).mkdir(parents=True)
        now = time.time()
        for i in range(args.staged):
            (root / "staging" / f"S{i:05d}").mkdir()
            job = {"accepted_at": now - i}
            atomic.write_json(root / "staging" / f"S{i:05d}" / "job.json", job, fsync=False)
        for i in range(args.failed):
            (root / "failed" / f"F{i:05d}").mkdir()
            report = {"job": f"F{i:05d}", "code": "x"}
            atomic.write_json(root / "failed" / f"F{i:05d}" / "report.json", report, fsync=False)
        for w in range(args.workers):
            heartbeat.write(root / ".lipsyncd", heartbeat.Heartbeat("h1", f"gpu{w}", 100 + w, 0.0, "working",
                                                                    job=f"J{w}"))
        config_path = Path(tmp) / "config.toml"
        config_path.write_text(f"[share]\nroot = '{root}'\n[general]\nhost_name = 'h1'\n"
                               "[watchdog]\ngpu_check = false\n")
        role = Role(load_config(str(config_path), env={}), env={}, manager=NoManager())
        started = time.perf_counter()
        role.step()
        first = time.perf_counter() - started
        times = []
        for _ in range(args.passes):
            started = time.perf_counter()
            role.step()
            times.append(time.perf_counter() - started)
        role.close()
    print(f"staged={args.staged} failed={args.failed} workers={args.workers} passes={args.passes}")
    print(f"first pass {first * 1000:.1f} ms; later passes median {statistics.median(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
