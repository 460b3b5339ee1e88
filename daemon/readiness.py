"""Readiness of `lipsyncd up`'s children, as systemd judges it: each child gets its own NOTIFY_SOCKET.

Every role sends READY=1 (sd_notify, core/notify.py) once it is up: configuration read, share checked,
model loaded. `up` listens on one abstract-namespace datagram socket per child, so a child that died
before saying READY=1 failed to start, and one that said it and then worked did not, however soon it
died; a stopwatch cannot tell the two apart (a worker killed seconds into a job is not a start failure).
"""

from __future__ import annotations

import os
import secrets
import socket


class ReadyChannel:
    """One child's notify socket; `heard_ready()` drains it and says whether READY=1 arrived."""

    def __init__(self, name: str) -> None:
        self._address = f"\0lipsyncd-up-{os.getpid()}-{name}-{secrets.token_hex(4)}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self._sock.bind(self._address)

    @property
    def env_value(self) -> str:
        """The NOTIFY_SOCKET value for the child ("@" names the abstract namespace)."""
        return "@" + self._address[1:]

    def heard_ready(self) -> bool:
        """Read every pending message; True if one of them says READY=1."""
        ready = False
        while True:
            try:
                data = self._sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return ready
            except OSError:
                return ready
            ready = ready or b"READY=1" in data.split(b"\n")

    def close(self) -> None:
        self._sock.close()
