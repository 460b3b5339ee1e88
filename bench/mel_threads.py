"""CPU time of wav2lip's mel for long speech, numpy's BLAS on its default threads against one.

    python3 bench/mel_threads.py [--minutes 10] [--repeat 2]

Each run is a fresh process (the BLAS limit is process-wide): seeded noise as the speech, the mel made
the way the engine makes it, then 0.5 s idle, since OpenBLAS's threads spin for a while after a call;
the CPU time (user + system) covers both, the wall time the mel alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = """
import json, resource, sys, time
import numpy as np
from daemon.worker.engines.wav2lip import mel
from daemon.worker.media.cores import one_blas_thread
if sys.argv[2] == "one":
    one_blas_thread()
wav = (np.random.default_rng(0).standard_normal(int(16000 * 60 * float(sys.argv[1]))) * 0.1).astype(np.float32)
before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
mel.melspectrogram(wav)
wall = time.perf_counter() - t
time.sleep(0.5)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall_s": round(wall, 3),
                  "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3)}))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    for _ in range(args.repeat):
        for threads in ("default", "one"):
            done = subprocess.run([sys.executable, "-c", RUN, str(args.minutes), threads], cwd=REPO,
                                  capture_output=True, text=True, check=True)
            print(json.dumps({"blas": threads, **json.loads(done.stdout)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
