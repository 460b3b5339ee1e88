"""The whole appliance against a plain transcode: `lipsyncd up`, then `lipsyncd submit --wait` per case.

    python3 bench/appliance.py --out appliance.json [--cases warm720 new720 noface720 long720] [--repeat 3]

wav2lip engine with random weights in an official-format checkpoint; generated 25 fps talking-head clips
(the astronaut's head on a plain background, drifting), a faceless one (the same motion, a rocket),
speech-like audio. Right before each of our jobs, the same box runs `ffmpeg -i clip -i speech -c:v libx264
-preset veryfast -crf 20 -c:a aac`. "new" = bytes never seen (a fresh metadata tag: the face cache misses),
"warm" = the presenter file submitted before, "brief" = the face for the first 5 s then the rocket (the
rest passes through), "long" = 10 minutes, "thirty" = 30 minutes (for its memory only: no plain run).
Repeats are interleaved; the JSON keeps every run, the summary medians and ratios (report.json's
render_s and submit → done, each over plain), the CPU seconds of the worker and of each kind of ffmpeg
child and the worker tree's peak RSS (the sum over the worker and its children, sampled every 50 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import media  # noqa: E402
from bench_wav2lip_gpu import presenter_png, speech_wav, talking_head  # noqa: E402


def ff(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


def inputs(root: Path, seconds: float, heights: set[int], long_min: int) -> dict[str, Path]:
    """Clips and speech, made once per box."""
    from skimage import data, io

    files: dict[str, Path] = {}
    face, rocket = root / "presenter.png", root / "rocket.png"
    presenter_png(face)
    io.imsave(str(rocket), data.rocket()[:, 100:420], check_contrast=False)
    speech_wav(root / "speech.wav", seconds, seed=1)
    files["speech"] = root / "speech.wav"
    for h in sorted(heights):
        for name, png in ((f"face{h}", face), (f"noface{h}", rocket)):
            files[name] = root / f"{name}.mp4"
            if not files[name].exists():  # the lane sweep may have made it already
                talking_head(files[name], "ffmpeg", h, seconds, png)
    if long_min:
        h = min(heights)
        files[f"long{h}"] = media.repeated(files[f"face{h}"], long_min, root / f"long{h}.mp4")
        speech_wav(root / "speech_long.wav", seconds * long_min, seed=2)
        files["speech_long"] = root / "speech_long.wav"
    for h in sorted(heights):  # the face for the first 5 s, then the rocket: the rest passes through
        files[f"brief{h}"] = root / f"brief{h}.mp4"
        if not files[f"brief{h}"].exists():
            ff("-i", files[f"face{h}"], "-i", files[f"noface{h}"], "-filter_complex",
               "[0:v]trim=0:5,setpts=PTS-STARTPTS[a];[1:v]trim=5,setpts=PTS-STARTPTS[b];[a][b]concat=n=2:v=1",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "50", "-an", files[f"brief{h}"])
    return files


def thirty_minutes(files: dict[str, Path], root: Path, height: int) -> None:
    """A 30-minute presenter and speech (the 60 s ones stream-copied 30 times), for the memory case."""
    files[f"thirty{height}"] = media.repeated(files[f"face{height}"], 30, root / f"thirty{height}.mp4")
    files["speech_thirty"] = media.repeated(files["speech"], 30, root / "speech_thirty.wav")


def fresh_copy(src: Path, dst: Path, tag: str) -> Path:
    """Same frames, new bytes (a metadata tag): a presenter the face cache has never seen."""
    ff("-i", src, "-map", "0", "-c", "copy", "-metadata", f"comment={tag}", "-movflags", "+faststart", dst)
    return dst


def plain(clip: Path, speech: Path, out: Path) -> tuple[float, float]:
    """(wall s, CPU s: user + system of the ffmpeg child) of the plain transcode."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    ff("-i", clip, "-i", speech, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-c:a", "aac", out)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def kind(proc: psutil.Process) -> str:
    """Which part of the pipeline an ffmpeg child is, from its command line."""
    try:
        argv = " ".join(proc.cmdline())
    except psutil.Error:
        return "gone"
    for key, name in (("ffprobe", "probe"), ("libx264", "encode"), ("select=not(mod", "faces"),
                      ("concat", "mux"), ("audio.m4a", "audio"), ("audio16k", "speech"), ("daemon", "worker")):
        if key in argv:
            return name
    return "decode" if "ffmpeg" in argv else "other"


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


class CpuSampler:
    """CPU seconds per pipeline part in a process tree: the largest user+system seen per pid."""

    def __init__(self, pids: list[int]) -> None:
        self.roots = [psutil.Process(p) for p in pids]
        self.seen: dict[int, tuple[str, float]] = {}
        self.base: dict[int, float] = {}
        self.peak_rss = 0  # bytes: the largest sum of RSS over the tree (worker + ffmpeg children) seen
        self.peak_parts: dict[str, float] = {}  # MB per part (worker, encode, decode...) in that sample
        self.started = time.perf_counter()
        self.lives: dict[int, list[float]] = {}  # pid → [first seen, last seen] s after the start
        for proc in self.roots:
            self.base[proc.pid] = self._cpu(proc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        t = proc.cpu_times()
        return t.user + t.system

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for root in self.roots:
                try:
                    procs = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                now = time.perf_counter() - self.started
                sizes = [(p, _rss(p)) for p in procs]
                total = sum(size for _, size in sizes)
                if total > self.peak_rss:
                    self.peak_rss, self.peak_parts = total, {}
                    for p, size in sizes:
                        part = self._part(p)
                        self.peak_parts[part] = round(self.peak_parts.get(part, 0.0) + size / 1e6, 1)
                for proc in procs:
                    self.lives.setdefault(proc.pid, [now, now])[1] = now
                    try:
                        cpu = self._cpu(proc) - self.base.get(proc.pid, 0.0)
                    except psutil.Error:
                        continue
                    name = self._part(proc)
                    self.seen[proc.pid] = (name, max(cpu, self.seen.get(proc.pid, ("", 0.0))[1]))

    def _part(self, proc: psutil.Process) -> str:
        """The part a process was first seen as (its command line can be gone by now), else its kind."""
        return self.seen.get(proc.pid, (None, 0.0))[0] or kind(proc)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        out: dict[str, float] = {}
        for name, cpu in self.seen.values():
            out[name] = round(out.get(name, 0.0) + cpu, 2)
        return out

    def children(self) -> list[tuple[str, float, float]]:
        """(part, first seen, last seen) of every child, seconds after the sampler started, by start."""
        roots = {r.pid for r in self.roots}
        lives = [(self.seen.get(pid, ("gone", 0.0))[0], round(a, 2), round(b, 2))
                 for pid, (a, b) in self.lives.items() if pid not in roots]
        return sorted(lives, key=lambda child: child[1])


class Appliance:
    """`lipsyncd up` on a fresh share with the wav2lip engine; `submit` runs one job to the end."""

    def __init__(self, work: Path, ckpt: Path, env: dict[str, str]) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(dir=work, prefix="share-"))  # a fresh share every time
        self.env = dict(os.environ, LIPSYNCD_ROOT=str(self.root), LIPSYNCD_WORKER_ENGINE="wav2lip",
                        LIPSYNCD_ENGINES_WAV2LIP_CHECKPOINT=str(ckpt), LIPSYNCD_INTAKE_SETTLE_S="0.3",
                        LIPSYNCD_INTAKE_SETTLE_SCANS="2", LIPSYNCD_INTAKE_SCAN_INTERVAL_S="0.1",
                        LIPSYNCD_WORKER_POLL_INTERVAL_S="0.1", LIPSYNCD_INTAKE_PAUSE_BELOW_FREE_GB="0",
                        LIPSYNCD_INTAKE_RESUME_ABOVE_FREE_GB="0", **env)
        self.log = open(self.root.with_suffix(".log"), "wb")
        self.up = subprocess.Popen(["lipsyncd", "up"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.wait_idle(1)

    def workers(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.up.pid).children(recursive=True)
                if " worker" in " ".join(p.cmdline())]

    def wait_idle(self, count: int, limit_s: float = 300) -> None:
        deadline = time.time() + limit_s
        while time.time() < deadline:
            if self.up.poll() is not None:
                raise RuntimeError(f"lipsyncd up exited {self.up.returncode}: see {self.log.name}")
            beats = list((self.root / ".lipsyncd" / "workers").glob("*.json"))
            try:
                if len(beats) >= count and all(json.loads(b.read_text())["phase"] == "idle" for b in beats):
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise RuntimeError("workers not idle in time")

    def submit(self, speech: Path, clip: Path, name: str) -> dict[str, Any]:
        before = set(os.listdir(self.root / "done"))
        workers = self.workers()
        cpu = CpuSampler(workers)
        spy = profiler(workers, name)
        started = time.perf_counter()
        done = subprocess.run(["lipsyncd", "submit", "--wait", "--timeout", "1200", "--name", name,
                               str(speech), str(clip)], env=self.env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        split = cpu.stop()
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
            spy.wait(timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"submit failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
        [job] = set(os.listdir(self.root / "done")) - before
        report = json.loads((self.root / "done" / job / "report.json").read_text())
        result_bytes = (self.root / "done" / job / report["output"]).stat().st_size
        shutil.rmtree(self.root / "done" / job)  # results are big; keep the share small
        stats = report["stats"]
        return {"submit_to_done_s": round(wall, 3), "render_s": round(report["timings"]["render_s"], 3),
                "accepted_to_claimed_s": round(report["timings"]["claimed_at"] - report["timings"]["accepted_at"], 3),
                "frames": stats.get("frames"), "result_bytes": result_bytes,
                "faces_missing": stats.get("faces_missing"),
                "face_cache_hit": stats.get("face_cache_hit"), "cpu_split": stats.get("cpu_split"),
                "timings_s": stats.get("timings_s"), "cpu_s": split,
                "peak_tree_rss_mb": round(cpu.peak_rss / 1e6, 1), "peak_parts_mb": cpu.peak_parts,
                "children": cpu.children()}

    def close(self) -> None:
        os.killpg(self.up.pid, signal.SIGINT)
        try:
            self.up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.up.pid, signal.SIGKILL)


def checkpoint(path: Path) -> Path:
    import torch

    from daemon.worker.engines.wav2lip import generator

    torch.save({"state_dict": generator.Wav2Lip().state_dict(), "global_step": 0}, path)
    return path


def profiler(workers: list[int], name: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the worker's threads (Python and native frames) while a job runs, when
    $PROFILE_DIR is set: DIR/NAME.txt holds collapsed stacks (one per line, its sample count last)."""
    where = os.environ.get("PROFILE_DIR")
    if not where or not workers:
        return None
    Path(where).mkdir(parents=True, exist_ok=True)
    with open(Path(where) / f"{name}.log", "wb") as log:  # py-spy's messages; the child keeps its own copy
        spy = subprocess.Popen([os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(workers[0]),
                                "--threads", "--native", "--rate", "100", "--format", "raw",
                                "-o", str(Path(where) / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=log)
    time.sleep(0.5)  # attached before the job is submitted
    return spy


def parse(case: str) -> tuple[str, int]:
    """"warm720" → ("warm", 720): warm / new / noface / long, and the clip height."""
    height = case.lstrip("abcdefghijklmnopqrstuvwxyz")
    return case[:len(case) - len(height)], int(height)


def one_case(app: Appliance, files: dict[str, Path], work: Path, case: str, run: int) -> dict[str, Any]:
    state, height = parse(case)
    speech = files.get(f"speech_{state}", files["speech"])  # long: 10 min, thirty: 30 min
    src = files[{"long": "long", "noface": "noface", "brief": "brief", "thirty": "thirty"}.get(state, "face")
                + str(height)]
    clip = files[f"warm{height}"] if state == "warm" else fresh_copy(src, work / f"{case}-{run}.mp4", f"{case}-{run}")
    # the 30-minute case is there for its memory: no plain transcode (70 s of device time)
    plain_s, plain_cpu = (float("nan"), float("nan")) if state == "thirty" else plain(clip, speech, work / "plain.mp4")
    plain_bytes = (work / "plain.mp4").stat().st_size if state != "thirty" else None
    row = {"case": case, "run": run, "plain_s": round(plain_s, 3), "plain_cpu_s": round(plain_cpu, 2),
           "plain_bytes": plain_bytes,
           **app.submit(speech, clip, f"{case}-{run}")}
    row["render_over_plain"] = round(row["render_s"] / plain_s, 3)
    row["submit_over_plain"] = round(row["submit_to_done_s"] / plain_s, 3)
    if state != "warm":
        clip.unlink()
    return row


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def median(xs: list[float]) -> float:
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else round((xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2, 3)

    out = []
    for case in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == case]
        out.append({"case": case, "runs": len(group), "median_plain_s": median([r["plain_s"] for r in group]),
                    "median_render_s": median([r["render_s"] for r in group]),
                    "median_render_over_plain": median([r["render_over_plain"] for r in group]),
                    "render_over_plain": [r["render_over_plain"] for r in group],
                    "median_submit_over_plain": median([r["submit_over_plain"] for r in group]),
                    "submit_over_plain": [r["submit_over_plain"] for r in group],
                    "peak_tree_rss_mb": [r["peak_tree_rss_mb"] for r in group]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", nargs="+", default=["warm720", "new720", "noface720", "warm1080", "new1080"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--long-min", type=int, default=10)
    ap.add_argument("--env", nargs="*", default=[], help="KEY=VALUE settings for lipsyncd up")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="appliance-"))
    work.mkdir(parents=True, exist_ok=True)
    heights = {parse(c)[1] for c in args.cases}
    longs = any(parse(c)[0] == "long" for c in args.cases)
    files = inputs(work, args.seconds, heights, args.long_min if longs else 0)
    for case in args.cases:
        if parse(case)[0] == "thirty":
            thirty_minutes(files, work, parse(case)[1])
    app = Appliance(work / "run", checkpoint(work / "wav2lip.pth"), dict(kv.split("=", 1) for kv in args.env))
    result: dict[str, Any] = {"command": " ".join(sys.argv), "cpus": os.cpu_count(), "rows": []}
    try:
        for h in sorted(heights):  # the warm presenters: seen once before any timed run (also warms up)
            files[f"warm{h}"] = fresh_copy(files[f"face{h}"], work / f"warm{h}.mp4", "warm")
            result.setdefault("warmup", []).append(app.submit(files["speech"], files[f"warm{h}"], f"warmup{h}"))
        for run in range(args.repeat):
            for case in args.cases:
                row = one_case(app, files, work, case, run)
                result["rows"].append(row)
                print(json.dumps({k: row[k] for k in ("case", "run", "plain_s", "render_s", "submit_to_done_s",
                                                      "render_over_plain", "faces_missing", "peak_tree_rss_mb",
                                                      "cpu_s")}), flush=True)
                result["summary"] = summary(result["rows"])
                args.out.write_text(json.dumps(result, indent=1))
    finally:
        app.close()
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
