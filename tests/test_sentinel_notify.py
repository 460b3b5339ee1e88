"""sd_notify datagrams against a real AF_UNIX datagram socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from daemon.core.notify import Notifier


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    folder = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # AF_UNIX paths are limited to 107 bytes
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def test_ready_and_status_arrive_as_one_datagram(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert Notifier({"NOTIFY_SOCKET": path}).ready("watching /srv")
    assert sock.recv(4096).decode().splitlines() == ["READY=1", "STATUS=watching /srv"]


def test_watchdog_ping_only_when_systemd_asked_for_one(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert not Notifier({"NOTIFY_SOCKET": path}).alive("ok")  # no WATCHDOG_USEC: WatchdogSec not set
    pinger = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    assert pinger.alive("2 healthy") and pinger.watchdog_s == 30
    assert sock.recv(4096).decode().splitlines() == ["WATCHDOG=1", "STATUS=2 healthy"]


def test_watchdog_meant_for_another_pid_is_ignored(listener: tuple[socket.socket, str]) -> None:
    _sock, path = listener
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert not other.alive()


def test_abstract_socket_name_with_at_sign() -> None:
    name = f"lipsyncd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert sock.recv(4096) == b"STOPPING=1"


def test_without_notify_socket_everything_is_a_no_op() -> None:
    quiet = Notifier({})
    assert not quiet.enabled and not quiet.ready() and not quiet.alive() and not quiet.stopping()


def test_a_vanished_socket_does_not_raise() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"}).ready()


def test_a_manager_that_stops_reading_costs_a_dropped_ping_not_a_hung_role(
        listener: tuple[socket.socket, str]) -> None:
    """Its queue holds net.unix.max_dgram_qlen datagrams; a blocking send past that never returned
    (seen: a watchdog that ignored SIGTERM in a loaded test run)."""
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    sent = [notifier.status(f"pass {i}") for i in range(64)]  # nobody reads
    assert sent[0] and not all(sent)
    assert sock.recv(4096).decode() == "STATUS=pass 0"  # what was queued is intact
