"""Cost of one status-board round (snapshot + STATUS.html + status.json) and of one retention sweep,
on a share with many finished jobs. Usage: python bench/status_board.py [DONE_JOBS ...] (default 1000 10000).

Builds the share in a temporary folder on the local disk; prints the median of 5 rounds per size.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import busy_share  # noqa: E402

from daemon.core import report  # noqa: E402
from daemon.core.config import RetentionConfig  # noqa: E402
from daemon.housekeeping.board import Board  # noqa: E402
from daemon.housekeeping.retention import Retention  # noqa: E402


def populate(root: Path, done: int) -> None:
    busy_share.build(root)
    now = time.time()
    for i in range(done):
        path = root / "done" / f"job{i:06d}"
        (path / "inputs").mkdir(parents=True)
        report.write_success(path, job_id=path.name, output="o.mp4", inputs={}, attempts=1,
                             timings={"finished_at": now - i, "render_s": 10.0})


def median_s(fn: object, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(sizes: list[int]) -> None:
    for done in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "share"
            root.mkdir()
            populate(root, done)
            board = Board(root, "en", 5.0, 20)
            sweep = Retention(root, RetentionConfig(done_days=3650, failed_days=3650))
            b = median_s(board.write)
            r = median_s(sweep.sweep)
            size = (root / "STATUS.html").stat().st_size
            print(f"done/ jobs {done:6d}: board round {b * 1000:7.1f} ms (STATUS.html {size} B), "
                  f"retention sweep (nothing expired) {r * 1000:7.1f} ms")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10000])
