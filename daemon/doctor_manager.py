"""`lipsyncd doctor`'s process-manager check: can the watchdog restart workers through its manager?

supervisord: the socket that SUPERVISOR_SERVER_URL (or watchdog.supervisord_url) names exists, accepts
this user and answers XML-RPC. systemd: it is this machine's init, and polkit lets the service user
restart a worker unit (asked of polkit itself when run as root, else the shipped rule must be installed).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import stat
import subprocess
import xmlrpc.client
from pathlib import Path

from daemon.core.config import Config
from daemon.verdicts import Fail, Skip

POLKIT_RULE = Path("/etc/polkit-1/rules.d/50-lipsyncd.rules")


def process_manager(config: Config, env: dict[str, str] | None = None) -> str:
    env = dict(os.environ) if env is None else env
    cfg, kind = config.watchdog, config.watchdog.process_manager
    url = env.get("SUPERVISOR_SERVER_URL") or cfg.supervisord_url
    if kind == "auto":
        sock = url.removeprefix("unix://") if url.startswith("unix://") else ""
        kind = "supervisord" if env.get("SUPERVISOR_SERVER_URL") or (sock and os.path.exists(sock)) else \
            "systemd" if os.path.isdir("/run/systemd/system") else "none"
    if kind in ("none", "up"):
        raise Skip({"none": "no process manager here: stalls are alerted, never restarted",
                    "up": "lipsyncd up restarts its own children"}[kind])
    if kind == "supervisord":
        return _supervisord(url, config)
    return _systemd(config)


def _supervisord(url: str, config: Config) -> str:
    from daemon.sentinel.managers.supervisord import Supervisord

    if url.startswith("unix://"):
        _socket_accepts(Path(url.removeprefix("unix://")), url)
    cfg = config.watchdog
    try:
        state = Supervisord(url, cfg.supervisord_program, cfg.manager_timeout_s).proxy.supervisor.getState()
    except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
        raise Fail(f"supervisord at {url} does not answer: {exc}; start it, or point SUPERVISOR_SERVER_URL "
                   "/ watchdog.supervisord_url at its socket") from None
    return f"supervisord at {url} answers ({state.get('statename')})"


def _socket_accepts(path: Path, url: str) -> None:
    if not path.exists():
        raise Fail(f"{url}: no such socket; is supervisord running with a [unix_http_server] at that file?")
    if not stat.S_ISSOCK(path.stat().st_mode):
        raise Fail(f"{url}: {path} is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
        except PermissionError:
            raise Fail(f"{path}: permission denied for uid {os.geteuid()}; set chown= in [unix_http_server] to "
                       "the service user") from None
        except OSError as exc:
            raise Fail(f"{path}: cannot connect ({exc.strerror}): supervisord is not answering") from None


def _systemd(config: Config) -> str:
    cfg = config.watchdog
    if shutil.which(cfg.systemctl) is None:
        raise Fail(f"watchdog.systemctl = {cfg.systemctl}: not found")
    if not Path("/run/systemd/system").is_dir():  # sd_booted(): systemd is not this machine's init
        raise Fail("watchdog.process_manager = systemd, but systemd is not running on this machine")
    if os.geteuid() != 0:
        if not POLKIT_RULE.is_file():
            raise Fail(f"{POLKIT_RULE} missing: the watchdog's user may not restart worker units; install "
                       "systemd/50-lipsyncd.rules there (scripts/install.sh or `lipsyncd init` writes it)")
        return f"{cfg.systemctl} present, systemd running, {POLKIT_RULE} installed (run doctor as root to ask " \
            "polkit itself)"
    return _polkit_allows(config)


def _polkit_allows(config: Config) -> str:
    from daemon.sentinel.managers.supervision import expand

    unit, user = expand(config.watchdog.systemd_unit, "gpu0"), _service_user()
    try:
        # a process of the service user itself (not a root wrapper around it) is the polkit subject
        with subprocess.Popen(["sleep", "30"], user=user, group=user) as probe:
            try:
                done = subprocess.run(["pkcheck", "--action-id", "org.freedesktop.systemd1.manage-units",
                                       "--process", str(probe.pid), "--detail", "unit", unit,
                                       "--detail", "verb", "restart"], capture_output=True, text=True, timeout=20)
            finally:
                probe.kill()
    except (OSError, KeyError, subprocess.SubprocessError) as exc:
        raise Fail(f"cannot ask polkit about user {user}: {exc}") from None
    if done.returncode != 0:
        raise Fail(f"polkit does not let {user} restart {unit} ({done.stderr.strip().splitlines()[-1:]}): install "
                   "systemd/50-lipsyncd.rules (or the .pkla for polkit < 0.106); see scripts/install.sh")
    return f"polkit lets {user} restart {unit}"


def _service_user() -> str:
    return os.environ.get("LIPSYNCD_SERVICE_USER", "lipsyncd")
