"""A share root that is not there yet: wait for it with a clear log line, then exit 70, never 78.

After a reboot NFS/SMB mounts can come up late, and supervisord has no mount ordering (systemd has
RequiresMountsFor=). A missing root, or a mount point that /etc/fstab declares but that is not mounted
(its empty folder must never be filled with a local inbox/), is the machine's state, not the operator's
config: intake and workers wait up to `share.mount_wait_s`, then exit 70 so the manager starts them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from daemon.core.errors import ShareUnreachable
from daemon.core.notify import Notifier

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0
POLL_S = 2.0


def _mount_points(table: Path) -> set[str]:
    try:
        lines = table.read_text(errors="replace").splitlines()
    except OSError:
        return set()
    points = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            points.add(fields[1].replace("\\040", " "))
    return points


def missing(root: Path, fstab: Path = Path("/etc/fstab"), mounts: Path = Path("/proc/self/mounts")) -> str:
    """Why `root` is not usable yet ("" when it is): absent, or under an fstab mount that is not mounted."""
    if not root.is_dir():
        return f"share root {root} does not exist"
    declared, mounted = _mount_points(fstab) - {"/", "none", "swap"}, _mount_points(mounts)
    for folder in (root, *root.parents):
        if str(folder) in declared and str(folder) not in mounted:
            return f"share root {root} is not mounted yet ({folder} is in {fstab} but not mounted)"
    return ""


def wait_for_root(root: Path, wait_s: float, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep, probe: Callable[[Path], str] = missing) -> None:
    """Return once the root is there; ShareUnreachable (exit 70) after `wait_s` seconds without it."""
    why = probe(root)
    if not why:
        return
    notifier, started, said = Notifier(), clock(), -LOG_EVERY_S
    while why:
        waited = clock() - started
        if waited >= wait_s:
            raise ShareUnreachable(f"{why} after waiting {waited:.0f} s (share.mount_wait_s): mount the "
                                   "share, or fix share.root; exiting 70 so the process manager tries again")
        if waited - said >= LOG_EVERY_S:
            log.warning("%s: waiting for it (%.0f of %.0f s, share.mount_wait_s) before exiting 70", why,
                        waited, wait_s)
            said = waited
        # a long wait must not read as a hung start to systemd (TimeoutStartSec=)
        notifier.send(STATUS=f"waiting for the share: {why}", EXTEND_TIMEOUT_USEC=int(POLL_S * 3e6))
        sleep(min(POLL_S, max(0.0, wait_s - waited)))
        why = probe(root)
    log.info("share root %s is there after %.0f s", root, clock() - started)

