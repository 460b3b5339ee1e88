#!/usr/bin/env bash
# One command for the tests: installs everything they need (OS packages, .venv, torch, the project with
# its test extras), then runs pytest. Extra arguments go to pytest (e.g. ./test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh --test
exec .venv/bin/python -m pytest "$@"
