"""A restart the process manager refused is not a restart: no start-up grace, a retry with back-off,
and after `restart_failures_alert` refusals in a row one "needs a human" alert with the manager's words.
"""

from __future__ import annotations

from pathlib import Path

from chat_server import ChatServer
from test_sentinel_patrol import (
    FakeClock,
    FakeManager,
    deliver,
    lane,
    make_config,
    patrol_for,
    server,
    webhook,
    write_beat,
)

from daemon.sentinel.lane import Lane

__all__ = ["lane", "server"]  # fixtures


class RefusingManager(FakeManager):
    """Refuses like systemctl without polkit's blessing, until `accept` is set."""

    kind = "systemd"

    def __init__(self) -> None:
        super().__init__()
        self.accept = False
        self.error = ""

    def restart(self, worker: str, reason: str) -> bool:
        super().restart(worker, reason)
        self.error = "" if self.accept else ("systemctl restart --no-block lipsyncd-worker@0.service: exit 1: "
                                             "Failed to restart lipsyncd-worker@0.service: Access denied")
        return self.accept


def test_refused_restarts_are_retried_with_back_off_then_escalated_with_the_error(
        tmp_path: Path, server: ChatServer, lane: Lane) -> None:
    root = tmp_path / "share"
    config = make_config(root, webhook(server), restart_retry_s=5, restart_retry_max_s=20,
                         restart_failures_alert=3)
    clock, manager = FakeClock(), RefusingManager()
    write_beat(root, "working", clock() - 400)
    patrol = patrol_for(config, manager, lane, clock)
    attempts_at = []
    start = clock.t
    for _ in range(40):  # 40 s, one pass a second
        before = len(manager.restarts)
        patrol.step()
        if len(manager.restarts) > before:
            attempts_at.append(round(clock.t - start))
        clock.t += 1
    # 0, then 5, 10 and 20 s apart (capped at restart_retry_max_s): back-off, not one ask per pass
    assert attempts_at == [0, 5, 15, 35], attempts_at
    watch = patrol.snapshot(clock())["workers"]["h1--gpu0"]
    # no grace was granted: the worker is judged stalled all along, and no restart is counted
    assert watch["health"] == "stalled" and watch["restart_at"] is None and watch["restarts"] == 0
    deliver(patrol, clock)
    texts = [(r.body["title"], r.body["text"]) for r in server.received]
    [stalled] = [t for t in texts if "stalled" in t[0]]
    assert "FAILED" in stalled[1] and "Access denied" in stalled[1]
    [human] = [t for t in texts if "cannot be restarted" in t[0]]
    assert "needs a human" in human[0] and "Access denied" in human[1] and "3 times" in human[1]
    # the manager accepts again (polkit rule installed): the next attempt restarts, the incident resolves
    manager.accept = True
    for _ in range(25):
        patrol.step()
        clock.t += 1
    assert len(manager.restarts) == 5
    watch = patrol.snapshot(clock())["workers"]["h1--gpu0"]
    assert watch["restarts"] == 1 and watch["restart_at"] is not None
    deliver(patrol, clock)
    titles = [r.body["title"] for r in server.received]
    assert sum(t.startswith("Worker") and "cannot be restarted" in t for t in titles) == 1, titles
    assert any(t.startswith("Resolved") and "cannot be restarted" in t for t in titles[len(texts):]), titles


def test_supervisor_server_url_is_honoured_when_the_manager_is_named_and_errors_name_the_socket(
        tmp_path: Path) -> None:
    from daemon.sentinel.managers import pick_manager
    from daemon.sentinel.managers.supervisord import Supervisord

    config = make_config(tmp_path / "share", process_manager="supervisord")
    sock = tmp_path / "elsewhere" / "supervisor.sock"  # supervisord's socket, not the default path
    manager = pick_manager(config, {"SUPERVISOR_SERVER_URL": f"unix://{sock}", "SUPERVISOR_ENABLED": "1"})
    assert isinstance(manager, Supervisord) and manager.url == f"unix://{sock}"
    assert manager.restart("gpu0", "test") is False
    assert str(sock) in manager.error and "No such file" in manager.error
    view = manager.view("gpu0")
    assert view is not None and str(sock) in view.detail
    # without the variable the configured URL is used
    assert pick_manager(config, {}).url == config.watchdog.supervisord_url  # type: ignore[attr-defined]
