#!/usr/bin/env bash
# One command for the demo: installs lipsyncd, generates a talking-head job (a portrait photo and a
# synthetic voice), runs the whole appliance (`lipsyncd up`: intake, worker, watchdog) on a demo share,
# submits the job like a producer would, waits for the lip-synced result, and stops the appliance.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
ROOT=${LIPSYNCD_DEMO_ROOT:-$PWD/demo-root}
mkdir -p "$ROOT"
export LIPSYNCD_ROOT="$ROOT" LIPSYNCD_INTAKE_SETTLE_S=1 LIPSYNCD_WORKER_ENGINE=warp LIPSYNCD_WORKER_GPUS=0
echo "==> generating a talking-head job in $ROOT/demo-media"
.venv/bin/python demo/make_job.py "$ROOT/demo-media"
echo "==> starting the appliance (logs: $ROOT/up.log)"
.venv/bin/lipsyncd up >"$ROOT/up.log" 2>&1 &
UP=$!
trap 'kill -INT $UP 2>/dev/null; wait $UP 2>/dev/null || true' EXIT
.venv/bin/lipsyncd submit "$ROOT/demo-media/speech.wav" "$ROOT/demo-media/presenter.mp4" --name demo --wait
.venv/bin/lipsyncd status
echo "==> the result is in $ROOT/done/ (open STATUS.html in $ROOT for the status page)"
