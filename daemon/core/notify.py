"""sd_notify without a dependency: READY=1, STATUS=, WATCHDOG=1, STOPPING=1 to $NOTIFY_SOCKET.

A no-op when not started by systemd with Type=notify. WATCHDOG=1 must be sent from the main loop after
it checked real progress, never from a timer thread (that would keep pinging a deadlocked loop).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

SEND_TIMEOUT_S = 0.5


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET", "")
        if self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # abstract namespace
        watchdog_pid = env.get("WATCHDOG_PID", "")
        usec = env.get("WATCHDOG_USEC", "")
        mine = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else 0.0

    @property
    def enabled(self) -> bool:
        return self.address.startswith(("/", "\0"))  # vsock: addresses are not supported: stay silent

    def send(self, **fields: str | int) -> bool:
        """Send KEY=VALUE lines in one datagram; False when there is no socket or it failed."""
        if not self.enabled:
            return False
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # a manager that stops reading fills its queue (10 datagrams): a ping then blocked the
                # role for good, stop signals included; now it is dropped after a moment
                sock.settimeout(SEND_TIMEOUT_S)
                sock.connect(self.address)
                sock.sendall(text.encode("utf-8"))
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def alive(self, status: str = "") -> bool:
        """WATCHDOG=1 (with STATUS) if systemd asked for it; call after a pass that really worked."""
        if not self.watchdog_s:
            return False
        return self.send(WATCHDOG=1, **({"STATUS": status} if status else {}))

    def stopping(self) -> bool:
        return self.send(STOPPING=1)
