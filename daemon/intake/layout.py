"""The share's folders are the share's: a state folder replaced by a link (or a mount) is refused.

Checked at every scan and again just before a transaction commits: if inbox/ became a symlink while we
ran, following it would move files from outside the root into jobs. Nothing is touched while it lasts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.core.share import Share
from daemon.core.state import FOLDER_STATES


def checked(share: Share) -> tuple[Path, ...]:
    """The folders intake reads or renames through: every state folder, the internal one, its own."""
    return (*(share.folder(state) for state in FOLDER_STATES), share.internal, share.intake)


def problem(share: Share) -> str | None:
    """Why intake must not touch the share now ("layout: ..."), or None when every folder is real."""
    try:
        root_dev = os.stat(share.root).st_dev
    except OSError:
        return None  # unreachable: the scan reports that in its own words
    for path in checked(share):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return f"layout: {path} is missing; intake touches nothing until it is a plain folder again"
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return (f"layout: {path} was replaced by a symbolic link (to {_target(path)}); intake refuses "
                    "to scan or move anything through it: make it a plain folder of the share again")
        if not stat.S_ISDIR(st.st_mode):
            return f"layout: {path} is no longer a folder; intake touches nothing until it is one again"
        if st.st_dev != root_dev:
            return (f"layout: {path} is now on another filesystem (a mount appeared on it); intake "
                    "touches nothing until it is a plain folder of the share again")
    return None


def _target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"
