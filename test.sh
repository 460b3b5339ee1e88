#!/usr/bin/env bash
# One command for the tests: installs everything they need (OS packages, .venv, torch, the project with
# its test extras), runs the gates (ruff, mypy --strict), then pytest. Extra arguments go to pytest
# (e.g. ./test.sh -m slow).
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh --test
.venv/bin/ruff check .
.venv/bin/mypy --strict daemon
exec .venv/bin/python -m pytest "$@"
