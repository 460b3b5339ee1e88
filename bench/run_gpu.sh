#!/bin/bash
# The wav2lip GPU benchmark on the device machine, run from the repository root with the slim static
# ffmpeg and the wheels carried:   run(command="bash bench/run_gpu.sh", carry=[".whl", ".tools"])
# Results land under $OUT: machine.txt, model.json/.log and precision.log (no ffmpeg needed),
# pipeline.json/.log (per-stage timings), pipeline-untimed.json/.log (production timing), gpu_tests.log.
# PARTS="pipeline tests" picks parts; TIMED=0 skips the per-stage run; HEIGHTS="1080", BATCHES="16"
# (per-stage run), BATCHES_UNTIMED="16 32" and REPEAT (production-timed runs) and SECONDS_=20 size the
# pipeline part so the whole fits one 600 s device command.
set -uo pipefail
OUT=${OUT:-$PWD/.gpuwork/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# the device README's recipe for carried wheels (watchdog, ffmpeg-python, future: the box lacks them)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
export PATH=$PWD/.tools/ffmpeg:$PATH
export LD_LIBRARY_PATH=$PWD/.tools/ffmpeg${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  echo "cpus: $(nproc)"; free -g | head -2
  ffmpeg -version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} > "$OUT/machine.txt" 2>&1

PARTS=${PARTS:-model precision pipeline paths tests}
TIMED=${TIMED:-1}

# model numbers first: they need no ffmpeg, so they exist even if the pipeline part fails
if [[ " $PARTS " == *" model "* ]]; then
  timeout 150 python3 bench/bench_wav2lip_model.py --out "$OUT/model.json" 2>&1 | tee "$OUT/model.log"
fi
if [[ " $PARTS " == *" precision "* ]]; then
  timeout 60 python3 bench/bench_wav2lip_precision.py --device cuda --batch 16 2>&1 | tee "$OUT/precision.log"
fi
if [[ " $PARTS " == *" pipeline "* ]]; then
  # with per-stage GPU synchronisation (the shares), then as production runs it (the ratios)
  # shellcheck disable=SC2086 # HEIGHTS and BATCHES are lists on purpose
  [[ $TIMED == 1 ]] && timeout 240 python3 bench/bench_wav2lip_gpu.py --out "$OUT/pipeline.json" \
    --workdir /tmp/w2lbench --heights ${HEIGHTS:-1080 720} --seconds "${SECONDS_:-60}" --batch-frames ${BATCHES:-16 64} 2>&1 \
    | tee "$OUT/pipeline.log"
  # shellcheck disable=SC2086
  timeout 420 python3 bench/bench_wav2lip_gpu.py --out "$OUT/pipeline-untimed.json" --workdir /tmp/w2lbench \
    --heights ${HEIGHTS:-1080 720} --seconds "${SECONDS_:-60}" --batch-frames ${BATCHES_UNTIMED:-16} \
    --repeat "${REPEAT:-3}" --untimed 2>&1 | tee "$OUT/pipeline-untimed.log"
fi
if [[ " $PARTS " == *" paths "* ]]; then
  # the same clips the pipeline part generated: what two ffmpeg processes cost before Python is involved
  for h in ${HEIGHTS:-1080 720}; do
    timeout 150 python3 bench/transcode_paths.py "/tmp/w2lbench/clip$h.mp4" --repeat "${REPEAT:-3}" 2>&1 \
      | tee -a "$OUT/paths.log"
  done
fi
if [[ " $PARTS " == *" tests "* ]]; then
  timeout 120 python3 -m pytest -o addopts="" -q -m gpu tests/test_wav2lip_gpu.py tests/test_warp.py 2>&1 \
    | tee "$OUT/gpu_tests.log"
fi
