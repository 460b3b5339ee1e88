"""`lipsyncd up`'s child supervision through control files in `<root>/.lipsyncd/control/`.

`up` publishes `up.json` {children: {name: {pid, state, starts, last_exit, since}}}; a restart is
requested by atomically creating `restart-<NAME>` (content: the reason), which `up` acts on and removes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from daemon.core import atomic
from daemon.sentinel.managers.supervision import ProgramState, ProgramView

log = logging.getLogger(__name__)

STATES = {"starting": ProgramState.STARTING, "running": ProgramState.RUNNING,
          "backoff": ProgramState.BACKOFF, "fatal": ProgramState.FATAL, "stopped": ProgramState.STOPPED}


class UpControl:
    kind = "up"

    def __init__(self, internal: Path) -> None:
        self.folder = internal / "control"
        self.error = ""

    def _children(self) -> dict[str, dict[str, object]]:
        try:
            data = atomic.read_json(self.folder / "up.json")
        except (OSError, ValueError):
            return {}
        children = data.get("children") if isinstance(data, dict) else None
        return children if isinstance(children, dict) else {}

    def view(self, worker: str) -> ProgramView | None:
        name = f"worker-{worker}"
        child = self._children().get(name)
        if not isinstance(child, dict):
            return None
        state = STATES.get(str(child.get("state")), ProgramState.UNKNOWN)
        pid = child.get("pid")
        since = child.get("since")
        starts = child.get("starts")
        return ProgramView(name, state, int(pid) if isinstance(pid, int) and pid > 0 else None,
                           float(since) if isinstance(since, (int, float)) else None,
                           gave_up=state is ProgramState.FATAL,
                           restarts=int(starts) if isinstance(starts, int) else None,
                           detail=f"last exit {child.get('last_exit')}")

    def restart(self, worker: str, reason: str) -> bool:
        path = self.folder / f"restart-worker-{worker}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic.write_text(path, reason + "\n")
        except OSError as exc:
            self.error = f"cannot write {path}: {exc.strerror or exc}"
            log.error("cannot request a restart of worker-%s from lipsyncd up: %s", worker, self.error)
            return False
        self.error = ""
        log.info("asked lipsyncd up to restart worker-%s (%s)", worker, reason)
        return True

    def poll(self) -> None:
        pass

    def workers(self) -> list[str]:
        return sorted(n[len("worker-"):] for n in self._children() if n.startswith("worker-"))
