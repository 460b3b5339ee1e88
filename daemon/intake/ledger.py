"""Which job each duplicate key was first accepted as: `.lipsyncd/keys/<key>.json`.

History, not state: the job's folder still says where it is. A key whose job no longer exists in any
state folder (retention removed it) no longer counts as a duplicate.
"""

from __future__ import annotations

from daemon.core import atomic, state
from daemon.core.share import Share


class Ledger:
    def __init__(self, share: Share) -> None:
        self.root = share.root
        self.folder = share.keys

    def original(self, key: str) -> str | None:
        """The id of an existing job with this key, if it still exists somewhere."""
        try:
            job_id = atomic.read_json(self.folder / f"{key}.json")["job"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return job_id if state.find(self.root, job_id) is not None else None

    def record(self, key: str, job_id: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.json"
        if not path.exists():
            atomic.write_json(path, {"job": job_id}, fsync=False)
