"""The worker's own numeric libraries keep to one thread each (their idle pools spin against x264)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from pathlib import Path
import numpy as np
import threadpoolctl, torch
from daemon.core.config import Config
from daemon.worker.engines.copy import CopyEngine
from daemon.worker.pipeline import ChunkedRenderer

def blas():
    return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

before = {"blas": blas(), "torch": torch.get_num_threads()}
ChunkedRenderer(Config(), Path(sys.argv[1]), CopyEngine())
np.ones((300, 300)) @ np.ones((300, 300))  # a BLAS call after the limit
print(json.dumps({"before": before, "after": {"blas": blas(), "torch": torch.get_num_threads()}}))
"""


def test_the_renderer_leaves_blas_and_torch_one_thread_each(tmp_path: Path) -> None:
    # a fresh process: the settings are process-wide, and the test process's own must not decide it
    # four threads each to begin with (both libraries take at most one per core)
    env_free = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "4", "OMP_NUM_THREADS": "4"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env={**env_free, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    start = min(4, os.cpu_count() or 1)
    assert seen["before"]["blas"] and seen["before"] == {"blas": [start] * len(seen["before"]["blas"]), "torch": start}
    assert seen["after"] == {"blas": [1] * len(seen["before"]["blas"]), "torch": 1}
