"""supervisord through its XML-RPC interface (unix socket or HTTP): read state, restart without blocking.

A restart is stopProcess(wait=False) now and startProcess once the program reports STOPPED, so a
worker that takes `stopwaitsecs` to die never holds up the watchdog's loop. A stalled worker may be
SIGSTOPped: supervisord is asked to send it SIGCONT first, or the SIGTERM would wait `stopwaitsecs` and
end in a SIGKILL instead of a clean requeue. Every error names the socket or URL it tried.
"""

from __future__ import annotations

import http.client
import logging
import socket
import xmlrpc.client
from typing import Any

from daemon.core.errors import EXIT_CONFIG
from daemon.sentinel.managers.supervision import ProgramState, ProgramView, expand, worker_from

log = logging.getLogger(__name__)

BAD_NAME = 10  # supervisor.xmlrpc.Faults.BAD_NAME
STATES = {s.value: s for s in ProgramState}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    """xmlrpc.client transport with a timeout, over a unix socket when `path` is given."""

    def __init__(self, timeout: float, path: str | None = None) -> None:
        super().__init__()
        self.timeout, self.path = timeout, path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self.path:
            return _UnixConnection(self.path, self.timeout)
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class Supervisord:
    kind = "supervisord"

    def __init__(self, url: str, program: str, timeout_s: float = 10.0) -> None:
        self.url, self.template = url, program
        self.proxy: Any  # XML-RPC answers are plain dicts and lists at run time
        if url.startswith("unix://"):
            transport = _Transport(timeout_s, url[len("unix://"):])
            self.proxy = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=transport)
        else:
            self.proxy = xmlrpc.client.ServerProxy(url.rstrip("/") + "/RPC2", transport=_Transport(timeout_s))
        self._to_start: set[str] = set()
        self.error = ""

    def _info(self, name: str) -> dict[str, Any] | None:
        try:
            return self.proxy.supervisor.getProcessInfo(name)  # type: ignore[no-any-return]
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == BAD_NAME:
                return None
            raise

    def view(self, worker: str) -> ProgramView | None:
        name = expand(self.template, worker)
        try:
            info = self._info(name)
        except (OSError, xmlrpc.client.Error) as exc:
            return ProgramView(name, ProgramState.UNKNOWN, detail=f"supervisord unreachable at {self.url}: {exc}")
        if info is None:
            return None
        state = STATES.get(str(info.get("statename")), ProgramState.UNKNOWN)
        pid = int(info.get("pid") or 0) or None
        detail = str(info.get("spawnerr") or info.get("description") or "")
        # exit 78 is listed in exitcodes (no restart loop on a config error): as final as FATAL
        config_error = state is ProgramState.EXITED and info.get("exitstatus") == EXIT_CONFIG
        if config_error:
            detail = f"exited {EXIT_CONFIG}: configuration error (see its log)"
        return ProgramView(name, state, pid, float(info["start"]) if info.get("start") else None,
                           gave_up=state is ProgramState.FATAL or config_error, detail=detail)

    def restart(self, worker: str, reason: str) -> bool:
        name = expand(self.template, worker)
        try:
            info = self._info(name)
            if info is None:
                log.error("supervisord has no program %s (watchdog.supervisord_program)", name)
                return False
            if info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
                self._continue(name)
                self.proxy.supervisor.stopProcess(name, False)  # SIGTERM now, SIGKILL after stopwaitsecs
                self._to_start.add(name)
            elif info["statename"] != "STOPPING":
                self.proxy.supervisor.startProcess(name, False)
            else:
                self._to_start.add(name)
        except (OSError, xmlrpc.client.Error) as exc:
            self.error = f"supervisord at {self.url}: {exc}"
            log.error("supervisord refused to restart %s: %s", name, self.error)
            return False
        self.error = ""
        log.info("asked supervisord to restart %s (%s)", name, reason)
        return True

    def _continue(self, name: str) -> None:
        """SIGCONT through supervisord (3.2+), so a stopped process can act on the SIGTERM that follows."""
        try:
            self.proxy.supervisor.signalProcess(name, "CONT")
        except xmlrpc.client.Fault as fault:
            log.debug("supervisord could not send SIGCONT to %s: %s", name, fault.faultString)

    def poll(self) -> None:
        for name in sorted(self._to_start):
            try:
                info = self._info(name)
                if info is None or info["statename"] in ("STOPPED", "EXITED", "FATAL", "BACKOFF"):
                    if info is not None and info["statename"] in ("STOPPED", "EXITED"):
                        self.proxy.supervisor.startProcess(name, False)
                        log.info("supervisord: %s stopped, started it again", name)
                    self._to_start.discard(name)
            except (OSError, xmlrpc.client.Error) as exc:
                log.warning("supervisord at %s: cannot finish restarting %s yet: %s", self.url, name, exc)

    def workers(self) -> list[str]:
        try:
            infos = self.proxy.supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error):
            return []
        names = [worker_from(self.template, f"{i['group']}:{i['name']}") for i in infos]
        return sorted(n for n in names if n)
