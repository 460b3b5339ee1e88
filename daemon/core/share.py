"""The share root: its state folders and internal folder, created when missing and checked at start.

Every move is one rename, so all folders must sit on one filesystem and one mount; we refuse to start
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

STATE_FOLDERS = ("inbox", "staging", "processing", "done", "failed")
INTERNAL = ".lipsyncd"
INTERNAL_FOLDERS = ("workers", "roles", "control", "intake", "keys", "logs", "tmp")


@dataclass(frozen=True)
class Share:
    root: Path

    @property
    def internal(self) -> Path:
        return self.root / INTERNAL

    def folder(self, name: str) -> Path:
        return self.root / name

    def prepare(self) -> None:
        """Create missing folders and prove one rename works across all of them."""
        if not self.root.is_dir():  # a late mount, not a config mistake: exit 70 (core/mount.py waits first)
            raise ShareUnreachable(f"share root {self.root} does not exist: mount the share there or set "
                                   "share.root (or --root / LIPSYNCD_ROOT) to the right folder")
        try:
            for name in STATE_FOLDERS:
                (self.root / name).mkdir(exist_ok=True)
            for name in INTERNAL_FOLDERS:
                (self.internal / name).mkdir(parents=True, exist_ok=True)
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
        path = self.internal / "tmp" / token
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
        probe = self.internal / "tmp" / f".clock-{socket.gethostname()}-{os.getpid()}"
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
