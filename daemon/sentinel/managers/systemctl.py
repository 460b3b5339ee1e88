"""systemd through `systemctl`: `show` for state (start-limit-hit = gave up), `restart --no-block`.

The watchdog's user needs permission to restart the worker units (see systemd/README or the polkit
rule shipped next to the units).
"""

from __future__ import annotations

import logging
import subprocess
import time

from daemon.core.errors import EXIT_CONFIG
from daemon.sentinel.managers.supervision import ProgramState, ProgramView, expand, worker_from

log = logging.getLogger(__name__)

PROPERTIES = ("LoadState,ActiveState,SubState,Result,NRestarts,MainPID,ExecMainStartTimestampMonotonic,"
              "ExecMainStatus")
ACTIVE = {"active": ProgramState.RUNNING, "reloading": ProgramState.RUNNING,
          "activating": ProgramState.STARTING, "deactivating": ProgramState.STOPPING,
          "inactive": ProgramState.STOPPED, "failed": ProgramState.EXITED}


class Systemd:
    kind = "systemd"

    def __init__(self, systemctl: str, unit: str, timeout_s: float = 10.0) -> None:
        self.systemctl, self.template, self.timeout_s = systemctl, unit, timeout_s
        self.error = ""

    def _run(self, *args: str) -> str | None:
        try:
            done = subprocess.run([self.systemctl, *args], capture_output=True, text=True,
                                  timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.error = f"{self.systemctl} {args[0]} failed: {exc}"
            log.warning("%s", self.error)
            return None
        if done.returncode != 0:
            # e.g. "Access denied" (polkit), "Unit ... not found", "Failed to connect to bus"
            self.error = f"{self.systemctl} {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[:300]}"
            log.warning("%s", self.error)
            return None
        return done.stdout

    def view(self, worker: str) -> ProgramView | None:
        unit = expand(self.template, worker)
        out = self._run("show", unit, f"--property={PROPERTIES}")
        if out is None:
            return ProgramView(unit, ProgramState.UNKNOWN, detail="systemctl show failed")
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if props.get("LoadState") == "not-found":
            return None
        state = ACTIVE.get(props.get("ActiveState", ""), ProgramState.UNKNOWN)
        result = props.get("Result", "")
        # systemd stopped restarting it (systemd#1970), or RestartPreventExitStatus=78 held it back
        config_error = state is ProgramState.EXITED and props.get("ExecMainStatus") == str(EXIT_CONFIG)
        gave_up = result == "start-limit-hit" or config_error
        pid = int(props.get("MainPID") or 0) or None
        started = _wall_from_monotonic_us(props.get("ExecMainStartTimestampMonotonic", ""))
        restarts = int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else None
        return ProgramView(unit, ProgramState.FATAL if gave_up else state, pid, started, gave_up, restarts,
                           detail=f"{props.get('ActiveState')}/{props.get('SubState')} result={result}")

    def restart(self, worker: str, reason: str) -> bool:
        unit = expand(self.template, worker)
        ok = self._run("restart", "--no-block", unit) is not None
        if ok:
            self.error = ""
            log.info("asked systemd to restart %s (%s)", unit, reason)
        return ok

    def poll(self) -> None:
        pass  # systemd finishes a restart by itself

    def workers(self) -> list[str]:
        pattern = self.template.replace("{n}", "*").replace("{worker}", "*")
        out = self._run("list-units", "--all", "--plain", "--no-legend", pattern)
        names = [worker_from(self.template, line.split()[0]) for line in (out or "").splitlines() if line]
        return sorted(n for n in names if n)


def _wall_from_monotonic_us(text: str) -> float | None:
    # systemd reports start in CLOCK_MONOTONIC µs; convert on this host (same clock)
    if not text.isdigit() or text == "0":
        return None
    return time.time() - (time.monotonic() - int(text) / 1e6)
