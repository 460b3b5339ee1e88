#!/usr/bin/env bash
# Installs lipsyncd on a server, the way the shipped systemd units expect it, and prints what is left.
#   sudo scripts/install.sh [--share DIR] [--torch-index URL] [--no-venv] [--no-systemd] [--supervisor]
#   --share DIR        the share's mount point (default /srv/lipsyncd): written into config.toml and, when
#                      it is not /srv/lipsyncd, into drop-ins for RequiresMountsFor=/ReadWritePaths=
#   --torch-index URL  where pip gets torch (default: PyPI; CUDA 12.1 wheels: https://download.pytorch.org/whl/cu121)
#   --no-venv          keep an existing /opt/lipsyncd/venv as it is (offline re-install of the files)
#   --no-systemd       skip units and polkit (e.g. a container run by supervisord)
#   --supervisor       also install supervisor/lipsyncd.conf as /etc/lipsyncd/supervisord.conf
# The venv lives in /opt/lipsyncd/venv (every unit's ExecStart): a venv under /home, /root or /tmp cannot
# work behind ProtectHome=/PrivateTmp=. torch is installed first and pinned, so no other requirement pulls
# a different multi-GB build. Safe to run again: existing config.toml and lipsyncd.env are kept.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
SHARE=/srv/lipsyncd TORCH_INDEX="" VENV_STEP=1 SYSTEMD_STEP=1 SUPERVISOR_STEP=0
TORCH_PIN=2.13.0 PREFIX=/opt/lipsyncd USER_NAME=lipsyncd
while (($#)); do
  case "$1" in
    --share) SHARE=$2; shift 2;;
    --torch-index) TORCH_INDEX=$2; shift 2;;
    --no-venv) VENV_STEP=0; shift;;
    --no-systemd) SYSTEMD_STEP=0; shift;;
    --supervisor) SUPERVISOR_STEP=1; shift;;
    -h|--help) sed -n '2,13p' "$0"; exit 0;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (it creates a user, /etc/lipsyncd and units)" >&2; exit 1; }
case "$SHARE" in /*) ;; *) echo "install.sh: --share must be an absolute path" >&2; exit 2;; esac
VENV=$PREFIX/venv
say() { echo "==> $*"; }

if ((VENV_STEP)); then
  say "virtualenv $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_PIN')" 2>/dev/null; then
    say "torch $TORCH_PIN first (pinned)"
    "${PIP[@]}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==$TORCH_PIN"
  fi
  say "lipsyncd from $SRC"
  "${PIP[@]}" "$SRC"
fi
[ -x "$VENV/bin/lipsyncd" ] || { echo "install.sh: $VENV/bin/lipsyncd is missing (run without --no-venv)" >&2; exit 1; }

say "user $USER_NAME"
id -u "$USER_NAME" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/lipsyncd --no-create-home \
  --shell /usr/sbin/nologin "$USER_NAME"

say "/etc/lipsyncd"
install -d -m 755 /etc/lipsyncd
if [ ! -e /etc/lipsyncd/config.toml ]; then
  # the shipped, commented config with share.root set to the mount point
  sed "0,/^root = .*/s||root = \"$SHARE\"|" "$SRC/config.toml" > /etc/lipsyncd/config.toml
  chmod 644 /etc/lipsyncd/config.toml
fi
[ -e /etc/lipsyncd/lipsyncd.env ] || install -m 600 "$SRC/systemd/lipsyncd.env.example" /etc/lipsyncd/lipsyncd.env
# the units' Documentation= points here
install -d -m 755 /usr/share/doc/lipsyncd
install -m 644 "$SRC/README.md" /usr/share/doc/lipsyncd/README.md
install -m 644 "$SRC/systemd/README.md" /usr/share/doc/lipsyncd/systemd.md
install -m 644 "$SRC/supervisor/README.md" /usr/share/doc/lipsyncd/supervisor.md
if ((SUPERVISOR_STEP)); then
  say "supervisord config /etc/lipsyncd/supervisord.conf"
  install -m 644 "$SRC/supervisor/lipsyncd.conf" /etc/lipsyncd/supervisord.conf
  install -d -o "$USER_NAME" -g "$USER_NAME" /run/lipsyncd /var/log/lipsyncd
fi

if ((SYSTEMD_STEP)); then
  say "systemd units"
  for unit in lipsyncd-intake.service lipsyncd-watchdog.service lipsyncd-worker@.service lipsyncd.target; do
    install -m 644 "$SRC/systemd/$unit" /etc/systemd/system/
  done
  if [ "$SHARE" != /srv/lipsyncd ]; then
    for unit in lipsyncd-intake.service lipsyncd-watchdog.service lipsyncd-worker@.service; do
      install -d "/etc/systemd/system/$unit.d"
      {
        echo "# written by scripts/install.sh --share $SHARE"
        echo "[Unit]"
        [ "$unit" = lipsyncd-watchdog.service ] || echo "RequiresMountsFor=$SHARE"
        echo "[Service]"
        echo "ReadWritePaths=$SHARE"
      } > "/etc/systemd/system/$unit.d/share.conf"
    done
  fi
  say "polkit: the $USER_NAME user may restart lipsyncd-worker@*"
  POLKIT=$( (pkaction --version 2>/dev/null || true) | grep -oE "[0-9]+(\.[0-9]+)?" | head -1)
  if [ -n "$POLKIT" ] && [ "$(printf '%s\n0.106\n' "$POLKIT" | sort -V | head -1)" = 0.106 ]; then
    install -d /etc/polkit-1/rules.d
    install -m 644 "$SRC/systemd/50-lipsyncd.rules" /etc/polkit-1/rules.d/
  else  # polkit < 0.106 (Ubuntu 22.04, Debian 11) reads .pkla files only
    install -d /etc/polkit-1/localauthority/50-local.d
    install -m 644 "$SRC/systemd/50-lipsyncd.pkla" /etc/polkit-1/localauthority/50-local.d/
  fi
  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
fi

GPUS=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU ' || true)
cat <<EOF

lipsyncd is installed in $VENV. Left to do:
  1. Mount the share at $SHARE (NFS/SMB, in /etc/fstab) and give it to the service user:
       chown -R $USER_NAME: $SHARE
  2. Edit /etc/lipsyncd/config.toml (engine, [alerts.*] robots); put webhook secrets in
     /etc/lipsyncd/lipsyncd.env (chmod 600), never in config.toml.
  3. For the wav2lip engine, copy the official checkpoints where engines.wav2lip points.
  4. Start it, one worker per GPU (this machine shows ${GPUS:-0} GPU(s)):
       systemctl enable --now lipsyncd.target lipsyncd-worker@0
     or under supervisord: supervisord -c /etc/lipsyncd/supervisord.conf (install.sh --supervisor)
  5. Check everything, as the service user:
       sudo -u $USER_NAME $VENV/bin/lipsyncd doctor --config /etc/lipsyncd/config.toml
EOF
