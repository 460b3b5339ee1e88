#!/bin/bash
# Issue 15 / 19 runs on the device machine, from a copy of this tree (SRC) with the slim static ffmpeg
# (.tools/ffmpeg) and the wheels (.whl) carried at the checkout's root:
#   run(command="bash .gpuwork/src/bench/run_appliance.sh PART", carry=[".gpuwork", ".tools", ".whl"])
# PART: lanes+15 (x264 lane sweep, then the issue-15 cases) or 19 (shared GPU, RSS, one-encoder check);
# stage: the engine stage alone (bench/engine_stage.py; OLD=dir of an earlier frames.py + composite.py).
# TAG names this part's files (appliance$TAG.json ...), so one call can run the cases twice.
set -uo pipefail
ROOT=$PWD
SRC=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/.gpuwork/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$ROOT"/.whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$SRC
export PATH=/tmp/bin:$ROOT/.tools/ffmpeg:$PATH
export LD_LIBRARY_PATH=$ROOT/.tools/ffmpeg${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p /tmp/bin
printf '#!/bin/sh\nexec python3 -m daemon "$@"\n' > /tmp/bin/lipsyncd && chmod +x /tmp/bin/lipsyncd
cd "$SRC" || exit 1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  echo "cpus: $(nproc)"; free -g | head -2; lscpu | grep -E 'Model name|^CPU\(s\)'
  ffmpeg -version | head -1; python3 -c 'import torch; print("torch", torch.__version__)'
  cat "$SRC/.commit" 2>/dev/null || git -C "$SRC" log --oneline -1
} > "$OUT/machine.txt" 2>&1
PART=${1:-lanes+15}
TAG=${TAG:-}
W=/tmp/appl
if [[ $PART == *lanes* ]]; then
  mkdir -p $W
  python3 -c "import sys; sys.path[:0] = ['bench']; from pathlib import Path; import appliance as a; \
a.inputs(Path('$W'), 60, {720, 1080}, 0)"
  for h in ${LANE_HEIGHTS:-720 1080}; do
    # shellcheck disable=SC2086 # LANES is a list on purpose
    timeout ${TLANES:-100} python3 bench/encode_lanes.py $W/face$h.mp4 --repeat 2 ${LANES:+--configs $LANES} 2>&1 \
      | tee -a "$OUT/lanes.log"
  done
fi
if [[ $PART == *stage* ]]; then
  mkdir -p $W
  python3 -c "import sys; sys.path[:0] = ['bench']; from pathlib import Path; import appliance as a; \
a.inputs(Path('$W'), 60, {720, 1080}, 0)"
  for h in ${STAGE_HEIGHTS:-720 1080}; do
    timeout ${TSTAGE:-150} python3 bench/engine_stage.py --clip $W/face$h.mp4 ${OLD:+--old $OLD} \
      --out "$OUT/stage$h.json" 2>&1 | tee -a "$OUT/stage.log"
  done
fi
if [[ $PART == *15* ]]; then
  # shellcheck disable=SC2086 # CASES and ENVS are lists on purpose
  timeout ${T15:-420} python3 bench/appliance.py --out "$OUT/appliance$TAG.json" --workdir $W \
    --cases ${CASES:-warm720 new720 noface720 warm1080 new1080 long720} --repeat ${REPEAT:-3} ${ENVS:+--env $ENVS} \
    2>&1 | tee "$OUT/appliance$TAG.log"
  cat $W/run/share-*.log > "$OUT/up15$TAG.log" 2>/dev/null
  rm -rf $W/run
fi
if [[ $PART == *19* ]]; then
  timeout ${T19:-330} python3 bench/shared_gpu.py --out "$OUT/shared.json" --workers 1 2 4 --jobs ${JOBS:-12} \
    --workdir $W 2>&1 | tee "$OUT/shared.log"
  tail -c 200000 $W/w4/share-*.log > "$OUT/up19.log" 2>/dev/null
fi
if [[ $PART == *rss* ]]; then
  timeout ${TRSS:-200} python3 bench/memory.py --minutes 30 --baseline 1 --height 720 --engine warp \
    --dir /tmp/rss 2>&1 | tee "$OUT/rss.log"
fi
