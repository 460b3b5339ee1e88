"""The watchdog's own status: `<root>/.lipsyncd/roles/watchdog.json` and, optionally, a node_exporter
textfile (`lipsyncd_watchdog.prom`: temp name without .prom, then rename; no timestamps in samples).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from daemon.core import atomic


def write_json(internal: Path, snapshot: dict[str, Any]) -> None:
    path = internal / "roles" / "watchdog.json"
    path.parent.mkdir(exist_ok=True)  # not parents: an unmounted share must not be recreated locally
    atomic.write_json(path, {**snapshot, "pid": os.getpid()}, fsync=False)


def metrics_text(snapshot: dict[str, Any]) -> str:
    out = [
        "# HELP lipsyncd_watchdog_last_pass_timestamp_seconds When the watchdog last finished a pass.",
        "# TYPE lipsyncd_watchdog_last_pass_timestamp_seconds gauge",
        f"lipsyncd_watchdog_last_pass_timestamp_seconds {snapshot['written_at']:.3f}",
        "# HELP lipsyncd_share_reachable 1 if the share answered the last pass.",
        "# TYPE lipsyncd_share_reachable gauge",
        f"lipsyncd_share_reachable {int(bool(snapshot['share_ok']))}",
        "# HELP lipsyncd_worker_healthy 1 if the worker's verdict is healthy.",
        "# TYPE lipsyncd_worker_healthy gauge",
    ]
    for key, w in sorted(snapshot["workers"].items()):
        out.append(f'lipsyncd_worker_healthy{{worker="{_esc(key)}",health="{_esc(w["health"])}"}} '
                   f'{int(w["health"] == "healthy")}')
    out += ["# HELP lipsyncd_worker_restarts Restarts the watchdog requested within the restart window.",
            "# TYPE lipsyncd_worker_restarts gauge"]
    for key, w in sorted(snapshot["workers"].items()):
        out.append(f'lipsyncd_worker_restarts{{worker="{_esc(key)}"}} {w["restarts"]}')
    out += ["# HELP lipsyncd_alert_send_failures_total Failed alert deliveries by channel and code.",
            "# TYPE lipsyncd_alert_send_failures_total counter"]
    for name, ch in sorted(snapshot["channels"].items()):
        for code, count in sorted(ch["failures"].items()):
            labels = f'channel="{_esc(name)}",code="{_esc(code)}"'
            out.append(f"lipsyncd_alert_send_failures_total{{{labels}}} {count}")
    out += ["# HELP lipsyncd_alerts_pending Alerts waiting in the outbox.",
            "# TYPE lipsyncd_alerts_pending gauge", f"lipsyncd_alerts_pending {snapshot['outbox_pending']}"]
    return "\n".join(out) + "\n"


def write_textfile(folder: Path, snapshot: dict[str, Any]) -> None:
    # atomic.write_bytes uses a dot-prefixed temp name ending in .tmp: never parsed as a .prom file
    atomic.write_bytes(folder / "lipsyncd_watchdog.prom", metrics_text(snapshot).encode(), fsync=False)


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
