"""Throughput of 1, 2, 4 workers sharing one GPU through the real appliance (issue 19, one-GPU box).

    python3 bench/shared_gpu.py --out shared.json [--workers 1 2 4] [--jobs 12] [--seconds 60]

Per worker count: a fresh share, `lipsyncd up` (intake, worker gpu0, watchdog) plus N-1 more
`lipsyncd worker --gpu 0 --name gpu0-K`, each worker pinned to its own 16/N cores (what one GPU's
worker gets on the multi-GPU boxes); once all are idle, `lipsyncd submit` drops the queue (720p
presenters, cold face cache: each job's video gets new bytes) and the clock runs until every job is in
done/. Reports jobs/hour, the ratio to one worker, each worker's CPU seconds, GPU utilisation
(NVML, every 0.2 s), queue waits and render times from report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from appliance import Appliance, CpuSampler, checkpoint, fresh_copy, inputs  # noqa: E402


class GpuLoad:
    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            self._h, self._nvml = pynvml.nvmlDeviceGetHandleByIndex(0), pynvml
        except Exception:  # noqa: BLE001 - no GPU: no utilisation figures
            self._h = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._h is not None and not self._stop.wait(0.2):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._h).gpu)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


def cores(n: int, k: int) -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))
    share = max(1, len(cpus) // n)
    return cpus[k * share:(k + 1) * share]


def one_count(n: int, jobs: int, files: dict[str, Path], ckpt: Path, work: Path) -> dict[str, Any]:
    app = Appliance(work / f"w{n}", ckpt, {})
    extra = []
    try:
        psutil.Process(app.workers()[0]).cpu_affinity(cores(n, 0))
        for k in range(1, n):
            extra.append(subprocess.Popen(
                ["taskset", "-c", ",".join(map(str, cores(n, k))), sys.executable, "-m", "daemon", "--root",
                 str(app.root), "worker", "--gpu", "0", "--name", f"gpu0-{k}"],
                env=dict(app.env, CUDA_VISIBLE_DEVICES="0", CUDA_DEVICE_ORDER="PCI_BUS_ID"),
                stdout=app.log, stderr=subprocess.STDOUT))
        app.wait_idle(n)
        sources = ["face720", "face720b", "noface720"]
        clips = [fresh_copy(files[sources[i % 3]], work / f"q{n}-{i}.mp4", f"q{n}-{i}") for i in range(jobs)]
        pids = app.workers() + [p.pid for p in extra]
        cpu, gpu = CpuSampler(pids), GpuLoad()
        started = time.perf_counter()
        for i, clip in enumerate(clips):
            subprocess.run(["lipsyncd", "submit", "--name", f"q{i}", str(files["speech"]), str(clip)],
                           env=app.env, check=True, capture_output=True)
        submitted = time.perf_counter() - started
        while len(os.listdir(app.root / "done")) + len(os.listdir(app.root / "failed")) < jobs:
            time.sleep(0.2)
        wall = time.perf_counter() - started
        busy, load = cpu.stop(), gpu.stop()
        reports = [json.loads((app.root / "done" / j / "report.json").read_text())
                   for j in os.listdir(app.root / "done")]
    finally:
        for proc in extra:
            proc.terminate()
        for proc in extra:
            proc.wait(timeout=60)
        app.close()
    renders = sorted(r["timings"]["render_s"] for r in reports)
    waits = sorted(r["timings"]["claimed_at"] - r["timings"]["accepted_at"] for r in reports)
    return {"workers": n, "cores_per_worker": len(cores(n, 0)), "jobs": jobs,
            "failed": len(os.listdir(app.root / "failed")), "wall_s": round(wall, 2),
            "submit_s": round(submitted, 2), "jobs_per_hour": round(3600 * jobs / wall, 1),
            "median_render_s": round(renders[len(renders) // 2], 2), "max_render_s": round(renders[-1], 2),
            "median_queue_wait_s": round(waits[len(waits) // 2], 2), "gpu_util_mean_pct": load,
            "cpu_s": busy, "cpu_split": reports[0]["stats"].get("cpu_split")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="shared-"))
    work.mkdir(parents=True, exist_ok=True)
    files = inputs(work, args.seconds, {720}, 0)
    from bench_wav2lip_gpu import talking_head
    from skimage import data, io

    io.imsave(str(work / "mirrored.png"), data.astronaut()[:330, 90:420][:, ::-1], check_contrast=False)
    files["face720b"] = work / "face720b.mp4"  # a second presenter: the head mirrored
    talking_head(files["face720b"], "ffmpeg", 720, args.seconds, work / "mirrored.png")
    ckpt = checkpoint(work / "wav2lip.pth")
    result: dict[str, Any] = {"command": " ".join(sys.argv), "cpus": os.cpu_count(), "runs": []}
    for n in args.workers:
        result["runs"].append(one_count(n, args.jobs, files, ckpt, work))
        base = result["runs"][0]["jobs_per_hour"]
        for run in result["runs"]:
            run["ratio_to_one"] = round(run["jobs_per_hour"] / base, 3)
        print(json.dumps(result["runs"][-1]), flush=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
