"""Drivers for the real process managers the field tests run the shipped files under.

`SystemdLab`: a booted Debian 12 systemd in systemd-nspawn (shared/field-lab/boot-systemd.sh), the project
installed by scripts/install.sh, the share at /srv/lipsyncd inside (visible from here under the rootfs).
`SupervisorLab`: a real supervisord on this machine running supervisor/lipsyncd.conf as shipped, except
for paths (its socket in a non-default place) and the privilege switch (the tests run as root).
Both give the same verbs, so one scenario runs on either.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_BIN = "/opt/lipsyncd/venv/bin/lipsyncd"
# test-speed settings for every role, passed as environment (the shipped files stay as they are)
ROLE_ENV = {
    "LIPSYNCD_WORKER_ENGINE": "copy", "LIPSYNCD_WORKER_POLL_INTERVAL_S": "0.5",
    "LIPSYNCD_WORKER_LEASE_S": "60",
    "LIPSYNCD_INTAKE_SCAN_INTERVAL_S": "0.5", "LIPSYNCD_INTAKE_SETTLE_S": "0.5",
    "LIPSYNCD_INTAKE_LOCAL_EVENTS": "false", "LIPSYNCD_WATCHDOG_GPU_CHECK": "false",
    "LIPSYNCD_WATCHDOG_INTERVAL_S": "1", "LIPSYNCD_WATCHDOG_DISK_FREE_MIN_GB": "0",
    "LIPSYNCD_WATCHDOG_CHUNK_LIMIT_S": "20", "LIPSYNCD_WATCHDOG_LOADING_LIMIT_S": "120",
}


def boot_script() -> Path | None:
    """CI puts shared/ beside the clone (../shared); this machine has it at /work/shared."""
    for base in (REPO.parent / "shared", Path("/work/shared")):
        script = base / "field-lab" / "boot-systemd.sh"
        if script.is_file():
            return script
    return None


def wait_until(predicate, timeout: float, what: str, interval: float = 0.3):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class SystemdLab:
    kind = "systemd"

    def __init__(self, lab: Path) -> None:
        self.lab = lab
        self.rootfs = lab / "rootfs"
        self.share = self.rootfs / "srv" / "lipsyncd"

    # --- the container ------------------------------------------------------------------------------
    def running(self) -> bool:
        try:
            pid = int((self.lab / "nspawn.pid").read_text())
            return Path(f"/proc/{pid}/comm").read_text().strip() == "systemd-nspawn"
        except (OSError, ValueError):
            return False

    def boot(self, script: Path) -> bool:
        """Boot (debootstrap on the first run); False when the container was already running."""
        if self.running():
            self._sync_source()
            return False
        done = subprocess.run([str(script), str(REPO), str(REPO / ".venv"), str(self.lab)], capture_output=True,
                              text=True, timeout=1800)
        if done.returncode != 0:  # e.g. no Debian mirror for the first debootstrap, or no nspawn here
            import pytest

            pytest.skip(f"cannot boot systemd in nspawn: {(done.stdout + done.stderr).strip()[-600:]}")
        return True

    def _sync_source(self) -> None:
        # the container's venv has the project installed editable from /opt/lipsyncd/src
        src = self.rootfs / "opt" / "lipsyncd" / "src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        pack = subprocess.Popen(["tar", "--exclude=./.venv", "--exclude=./.git", "--exclude=*/__pycache__", "-cf",
                                 "-", "."], cwd=REPO, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-C", str(src), "-xf", "-"], stdin=pack.stdout, check=True, timeout=300)
        assert pack.wait(60) == 0

    def poweroff(self) -> None:
        pid = int((self.lab / "nspawn.pid").read_text())
        self.sh("systemctl poweroff", check=False)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 120, "the container to power off")

    def sh(self, command: str, check: bool = True, timeout: float = 300) -> str:
        done = subprocess.run([str(self.lab / "in.sh"), command], capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, f"{command}: exit {done.returncode}: {done.stdout}{done.stderr}"
        return done.stdout

    # --- the verbs ----------------------------------------------------------------------------------
    def install(self) -> str:
        return self.sh("/opt/lipsyncd/src/scripts/install.sh --no-venv")

    def fresh(self, env: dict[str, str] | None = None, config: str | None = None, wipe: bool = True) -> None:
        """Everything stopped, an empty share (unless not `wipe`) owned by the service user, the shipped
        config (or `config`), `env`."""
        empty = "rm -rf /srv/lipsyncd; install -d -o lipsyncd -g lipsyncd /srv/lipsyncd; " if wipe else ""
        self.sh("systemctl stop lipsyncd.target 'lipsyncd-worker@*'; systemctl reset-failed 'lipsyncd-*'; "
                f"{empty}"
                "sed '0,/^root = .*/s||root = \"/srv/lipsyncd\"|' /opt/lipsyncd/src/config.toml "
                "> /etc/lipsyncd/config.toml", check=False)
        if config is not None:
            (self.rootfs / "etc" / "lipsyncd" / "config.toml").write_text(config)
        lines = [f"{k}={v}" for k, v in {**ROLE_ENV, **(env or {})}.items()]
        (self.rootfs / "etc" / "lipsyncd" / "lipsyncd.env").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.sh("systemctl start lipsyncd.target lipsyncd-worker@0", check=False, timeout=600)

    def stop(self) -> None:
        self.sh("systemctl stop lipsyncd.target 'lipsyncd-worker@*'", check=False, timeout=600)

    def show(self, unit: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} -p MainPID,ActiveState,SubState,Result,ExecMainStatus,NRestarts",
                      check=False)
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def worker_pid(self) -> int | None:
        props = self.show("lipsyncd-worker@0")
        pid = int(props.get("MainPID") or 0)
        return pid if pid and props.get("ActiveState") == "active" else None

    def restart_worker(self) -> None:
        self.sh("systemctl restart --no-block lipsyncd-worker@0")

    def signal_worker(self, sig: signal.Signals) -> None:
        pid = self.worker_pid()
        assert pid is not None
        self.sh(f"kill -{sig.name[3:]} {pid}")

    def log(self) -> str:
        return self.sh("journalctl --no-pager -o cat -u 'lipsyncd-*' | tail -n 300", check=False)


CONF_KEYS_FOR_ROOT = re.compile(r"^(user|chown)=lipsyncd.*$", re.M)


class SupervisorLab:
    kind = "supervisord"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.share = folder / "share"
        # a socket far from /run/lipsyncd (AF_UNIX paths must stay short): the watchdog must find it
        self.sockdir = Path(tempfile.mkdtemp(prefix="lsv", dir="/tmp"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = folder / "config.toml"

    def fresh(self, env: dict[str, str] | None = None, config: str | None = None, wipe: bool = True) -> None:
        self.share.mkdir(exist_ok=True)  # a fresh tmp_path per test: empty either way
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("LIPSYNCD_", "SUPERVISOR_"))}
        self.env.update({**ROLE_ENV, **(env or {}), "PYTHONPATH": str(REPO)})
        self.config_path.write_text(config if config is not None else
                                    (REPO / "config.toml").read_text().replace(
                                        'root = "/srv/lipsyncd"', f'root = "{self.share}"', 1))
        text = (REPO / "supervisor" / "lipsyncd.conf").read_text()
        text = (text.replace(SHIPPED_BIN, str(Path(sys.executable).parent / "lipsyncd"))
                .replace("/etc/lipsyncd/config.toml", str(self.config_path))
                .replace("/run/lipsyncd", str(self.sockdir)).replace("/var/log/lipsyncd", str(self.folder)))
        (self.folder / "supervisord.conf").write_text(CONF_KEYS_FOR_ROOT.sub("", text))

    @property
    def url(self) -> str:
        return f"unix://{self.sockdir}/supervisor.sock"

    def rpc(self):  # type: ignore[no-untyped-def]
        from daemon.sentinel.managers.supervisord import Supervisord

        return Supervisord(self.url, "lipsyncd-worker:lipsyncd-worker-{n}", 10).proxy.supervisor

    def start(self) -> None:
        supervisord = Path(sys.executable).parent / "supervisord"
        self.proc = subprocess.Popen([str(supervisord), "-c", str(self.folder / "supervisord.conf")],
                                     cwd=self.folder, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: (self.sockdir / "supervisor.sock").exists(), 30, "supervisord's socket")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # supervisord stops every program first
            self.proc.wait(600)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.sockdir, ignore_errors=True)

    def info(self, name: str) -> dict[str, object]:
        try:
            return self.rpc().getProcessInfo(name)  # type: ignore[no-any-return]
        except (OSError, xmlrpc.client.Error):
            return {}

    def worker_pid(self) -> int | None:
        info = self.info("lipsyncd-worker:lipsyncd-worker-0")
        # STARTING has its pid too: a worker renders within supervisord's startsecs=10 on a fast box
        return int(info["pid"]) if info.get("statename") in ("STARTING", "RUNNING") and info.get("pid") else None

    def restart_worker(self) -> None:
        # what `supervisorctl restart` does: stop (SIGTERM, wait until it exits), then start
        name = "lipsyncd-worker:lipsyncd-worker-0"
        self.rpc().stopProcess(name, False)
        wait_until(lambda: self.info(name).get("statename") in ("STOPPED", "EXITED"), 400, "the worker to stop")
        self.rpc().startProcess(name, False)

    def signal_worker(self, sig: signal.Signals) -> None:
        pid = self.worker_pid()
        assert pid is not None
        os.kill(pid, sig)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-6000:] for p in sorted(self.folder.glob("*.log")))
