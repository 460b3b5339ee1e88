#!/usr/bin/env bash
# Installs what lipsyncd needs on a fresh Debian/Ubuntu machine: OS packages, a virtualenv in .venv,
# torch (pinned, installed before the project so no other spec pulls a multi-GB build), the project.
# Usage: scripts/bootstrap.sh [--test]   (--test adds what the test suite needs)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(ffmpeg espeak-ng sox python3-venv python3-dev bubblewrap)  # bubblewrap: the media box
extras="[worker]"  # the render stack; an intake/watchdog-only host can `pip install lipsyncd` alone
if [[ "${1:-}" == "--test" ]]; then
  packages+=(chromium tmux faketime e2fsprogs prometheus)  # prometheus: promtool check metrics
  packages+=(samba smbclient smbnetfs fuse3 rsync)  # the Samba intake tests (tests/field/test_samba_intake.py)
  # the rest of the field lab (slow tests): a second host on sshfs, a booted systemd, a CPU hog
  packages+=(sshfs openssh-server debootstrap systemd-container stress-ng)
  extras="[worker,test]"
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> installing OS packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
  echo "==> installing torch 2.13.0"
  "${PIP[@]}" torch==2.13.0
fi
echo "==> installing lipsyncd${extras}"
"${PIP[@]}" -e ".${extras}"
