"""What splitting decode and encode into two ffmpeg processes costs, before any Python touches a frame.

    python3 bench/transcode_paths.py CLIP [--preset veryfast --crf 20]

Runs, on the same clip and box: the plain one-process transcode; decode | encode through a shell pipe
(rawvideo yuv420p, as the pipeline's two children do); the same with the pipeline's encoder options
(segment muxer, forced keyframes); and the encoder alone reading pre-decoded frames from /dev/shm.
Prints median wall seconds of --repeat interleaved runs, frames/s and CPU seconds (user + system of
the children) for each; variants split the encoder options apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import tempfile
import time
from pathlib import Path


def timed(cmd: str) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 2)}


def probe(clip: Path) -> tuple[int, int, int, str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=width,height,nb_read_packets,r_frame_rate", "-of", "json", str(clip)],
                         check=True, capture_output=True, text=True).stdout
    s = json.loads(out)["streams"][0]
    return int(s["width"]), int(s["height"]), int(s["nb_read_packets"]), s["r_frame_rate"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("clip", type=Path)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--crf", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each path, interleaved; medians")
    args = parser.parse_args()
    w, h, frames, rate = probe(args.clip)
    clip = shlex.quote(str(args.clip))
    q = "ffmpeg -nostdin -v error -y"
    x264 = f"-c:v libx264 -preset {args.preset} -crf {args.crf} -pix_fmt yuv420p"
    raw_in = f"-f rawvideo -pix_fmt yuv420p -s {w}x{h} -framerate {rate} -i pipe:0"
    work = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    cuts = ",".join(str(n) for n in range(250, frames, 250))
    segments = (f"-force_key_frames 'expr:eq(mod(n,250),0)' -f segment -segment_format mp4 -reset_timestamps 1 "
                f"{'-segment_frames ' + cuts if cuts else ''} {work}/seg_%05d.mp4")
    raw = work / "frames.yuv"
    subprocess.run(["bash", "-c", f"{q} -i {clip} -an -f rawvideo -pix_fmt yuv420p {raw}"], check=True)
    decode = f"{q} -i {clip} -an -f rawvideo -pix_fmt yuv420p pipe:1"
    fixed_gop = "-x264-params keyint=250:min-keyint=250:scenecut=0"
    paths = {
        "plain (one process)": f"{q} -i {clip} -an {x264} {work}/plain.mp4",
        "decode | encode (two processes, pipe)": f"{decode} | {q} {raw_in} {x264} {work}/piped.mp4",
        "decode | encode, forced keyframes only": f"{decode} | {q} {raw_in} {x264} "
                                                  f"-force_key_frames 'expr:eq(mod(n,250),0)' {work}/forced.mp4",
        "decode | encode, segment muxer only": f"{decode} | {q} {raw_in} {x264} {segments.split(' ', 2)[2]}",
        "decode | encode, forced keyframes + segment muxer (the pipeline before)":
            f"{decode} | {q} {raw_in} {x264} {segments}",
        "decode | encode, fixed GOP + segment muxer (the pipeline now)":
            f"{decode} | {q} {raw_in} {x264} {fixed_gop} {segments.split(' ', 2)[2]}",
        "decode only (to a pipe)": f"{decode} | cat > /dev/null",
        "encode only (frames from RAM)": f"cat {raw} | {q} {raw_in} {x264} {work}/enc.mp4",
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    for _ in range(args.repeat):  # interleaved, so a slow spell of the box hits every path alike
        for name, cmd in paths.items():
            results[name].append(timed(cmd))
    for name, runs in results.items():
        walls = sorted(r["wall_s"] for r in runs)
        median = walls[len(walls) // 2]
        print(json.dumps({"path": name, "frames": frames, "median_wall_s": median, "walls_s": walls,
                          "median_cpu_s": sorted(r["cpu_s"] for r in runs)[len(runs) // 2],
                          "fps": round(frames / median, 1)}), flush=True)
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
