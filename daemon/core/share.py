"""The share's layout: one `Share` value names every folder under the root, state and internal alike.

Built once by each role from `config.root` and passed in; no other code spells a share path. Every move
is one rename, so all folders must sit on one filesystem and one mount; `prepare()` refuses to start
(ConfigError, exit 78) when they do not, when the root is missing, or when a test rename fails.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from daemon.core.errors import ConfigError, ShareUnreachable, is_unreachable
from daemon.core.job import FOLDER_STATES, JobState

STATE_FOLDERS = tuple(state.folder for state in FOLDER_STATES)
INTERNAL = ".lipsyncd"


@dataclass(frozen=True)
class Share:
    root: Path

    def folder(self, state: JobState) -> Path:
        return self.root / state.folder

    @property
    def inbox(self) -> Path:
        return self.folder(JobState.INBOX)  # producers drop here

    @property
    def staging(self) -> Path:
        return self.folder(JobState.STAGING)

    @property
    def processing(self) -> Path:
        return self.folder(JobState.PROCESSING)

    @property
    def done(self) -> Path:
        return self.folder(JobState.DONE)

    @property
    def failed(self) -> Path:
        return self.folder(JobState.FAILED)

    @property
    def internal(self) -> Path:
        return self.root / INTERNAL  # ours alone: producers never write here

    @property
    def workers(self) -> Path:
        return self.internal / "workers"  # one heartbeat file per worker

    @property
    def roles(self) -> Path:
        return self.internal / "roles"  # intake.json, watchdog.json: each role's last word

    @property
    def control(self) -> Path:
        return self.internal / "control"  # `lipsyncd up`'s state and restart requests

    @property
    def intake(self) -> Path:
        return self.internal / "intake"  # one folder per acceptance in progress (a transaction)

    def transaction(self, txn: str) -> Path:
        """The folder in which intake assembles one transaction's job folders."""
        return self.intake / txn

    @property
    def keys(self) -> Path:
        return self.internal / "keys"  # duplicate keys → the job first accepted with each

    @property
    def logs(self) -> Path:
        return self.internal / "logs"  # one folder per host

    @property
    def tmp(self) -> Path:
        return self.internal / "tmp"

    @property
    def outbox(self) -> Path:
        return self.internal / "outbox"  # alerts waiting for their chat (unless alerts.outbox_dir)

    @property
    def trash(self) -> Path:
        return self.internal / "trash"  # retention renames here, then deletes

    @property
    def facecache(self) -> Path:
        return self.internal / "facecache"  # face boxes per source video

    @property
    def made_at_start(self) -> tuple[Path, ...]:
        """The internal folders `prepare()` makes; the others appear when first written."""
        return (self.workers, self.roles, self.control, self.intake, self.keys, self.logs, self.tmp)

    def is_internal(self, relative: str) -> bool:
        """Whether a path relative to the root lies in the internal folder."""
        return Path(relative).parts[:1] == (INTERNAL,)

    def prepare(self) -> None:
        """Create missing folders and prove one rename works across all of them."""
        if not self.root.is_dir():  # a late mount, not a config mistake: exit 70 (core/mount.py waits first)
            raise ShareUnreachable(f"share root {self.root} does not exist: mount the share there or set "
                                   "share.root (or --root / LIPSYNCD_ROOT) to the right folder")
        try:
            for state in FOLDER_STATES:
                self.folder(state).mkdir(exist_ok=True)
            for folder in self.made_at_start:
                folder.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise ConfigError(f"cannot create {exc.filename}: the share is not writable by this user "
                              f"(uid {os.getuid()}); fix its permissions or run as its owner") from None
        except OSError as exc:
            if is_unreachable(exc):
                raise ShareUnreachable(f"share {self.root} is not answering: {exc.strerror}") from exc
            raise
        self._check_one_filesystem()
        self._check_renames()

    def _check_one_filesystem(self) -> None:
        root_dev = os.stat(self.root).st_dev
        for name in (*STATE_FOLDERS, INTERNAL):
            path = self.root / name
            if os.stat(path).st_dev != root_dev:
                raise ConfigError(
                    f"{path} is on a different filesystem than {self.root}: jobs move by rename, so "
                    f"inbox/, staging/, processing/, done/, failed/ and {INTERNAL}/ must all live on the "
                    "same filesystem and mount; remove the separate mount or symlink for "
                    f"{name}/ and let lipsyncd create it as a plain folder")

    def _check_renames(self) -> None:
        """Walk a probe file through every folder by rename; EXDEV or EACCES means we cannot work."""
        token = f".lipsyncd-probe-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        path = self.tmp / token
        try:
            path.write_bytes(b"probe\n")
            for name in (*STATE_FOLDERS, INTERNAL):
                nxt = self.root / name / token
                try:
                    os.rename(path, nxt)
                except PermissionError as exc:
                    raise ConfigError(_refused_rename(path.parent, nxt.parent, exc)) from None
                path = nxt
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise ConfigError(f"a test rename into {exc.filename2 or exc.filename} crossed filesystems "
                                  "(EXDEV): all share folders must be on one mount; bind mounts count "
                                  "as separate mounts") from None
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise ConfigError(f"a test rename in {self.root} was refused ({exc.strerror}): the share "
                                  "must be writable by this user") from None
            if is_unreachable(exc):
                raise ShareUnreachable(f"share {self.root} is not answering: {exc.strerror}") from exc
            raise
        finally:
            try:
                path.unlink()
            except OSError:
                pass

    def now(self) -> float:
        """The share's own clock: the mtime of a probe file we just touched (no local clock)."""
        probe = self.tmp / f".clock-{socket.gethostname()}-{os.getpid()}"
        with open(probe, "wb") as fh:
            fh.write(b"t")
        return os.stat(probe).st_mtime


def _refused_rename(source: Path, dest: Path, exc: OSError) -> str:
    """Why a rename between two share folders was refused: a folder we cannot write, or — when both
    take a new file — two filesystems on the file server. A FUSE or network mount (sshfs, some SMB
    servers) reports one st_dev for every folder and turns the server's EXDEV into EPERM/EACCES, so
    the st_dev check cannot see it and the errno alone would wrongly blame permissions."""
    for folder in (source, dest):
        if not _takes_a_new_file(folder):
            return (f"a test rename from {source.name}/ into {dest.name}/ was refused ({exc.strerror}): "
                    f"{folder} is not writable by this user (uid {os.getuid()}); fix its permissions or run "
                    "as the share's owner")
    return (f"a test rename from {source.name}/ into {dest.name}/ was refused ({exc.strerror}) although both "
            f"folders are writable: {dest} is on another filesystem than {source} on the file server (a "
            "separate mount or disk there; FUSE and network mounts report that as a refusal). Jobs move "
            f"by rename, so make {dest.name}/ a plain folder on the same filesystem as the rest of the share")


def _takes_a_new_file(folder: Path) -> bool:
    probe = folder / f".lipsyncd-write-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        probe.write_bytes(b"w")
    except OSError:
        return False
    try:
        probe.unlink()
    except OSError:
        pass
    return True
