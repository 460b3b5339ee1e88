"""The intake role's housekeeping loop: board every round, retention on its own interval (injected clock),
share trouble logged once and retried, a bug stops the role instead of freezing the page."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path

import busy_share
import pytest

from daemon.core.config import Config, RetentionConfig, ShareConfig
from daemon.housekeeping.keeper import Housekeeper


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config_for(root: Path) -> Config:
    return replace(Config(), share=ShareConfig(root=str(root)), retention=RetentionConfig(done_days=1))


def test_board_every_round_retention_every_interval(root: Path) -> None:
    ids = busy_share.build(root)
    clock = Clock(busy_share.time.time())
    keeper = Housekeeper(config_for(root), clock)
    keeper.step()  # first round sweeps at once: the done job finished an hour ago, under a day: kept
    assert (root / "STATUS.html").exists() and (root / "done" / ids["done"]).exists()
    clock.t += 2 * 86400  # two days later the job is past done_days = 1...
    keeper.next_sweep = clock.t + 60  # ...but a sweep ran a minute ago: the board alone this round
    keeper.step()
    assert (root / "done" / ids["done"]).exists()  # not yet: the next sweep is due in a minute
    clock.t += 61
    keeper.step()
    assert not (root / "done" / ids["done"]).exists()
    assert (root / "failed" / ids["failed"]).exists()  # failed/ keeps 90 days


def test_a_failing_write_is_logged_once_and_retried(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    busy_share.build(root)
    (root / "STATUS.html").mkdir()  # something in the way: every write fails (IsADirectoryError)
    keeper = Housekeeper(config_for(root))
    with caplog.at_level(logging.INFO, logger="daemon.housekeeping"):
        for _ in range(3):
            keeper.step()
        assert sum("could not write status page" in r.message for r in caplog.records) == 1
        (root / "STATUS.html").rmdir()
        keeper.step()
    assert (root / "STATUS.html").is_file()
    assert any("status page written again" in r.message for r in caplog.records)


def test_a_bug_in_the_loop_stops_the_role(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy_share.build(root)
    keeper = Housekeeper(config_for(root))

    def broken() -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(keeper.board, "write", broken)
    stop, stopped = threading.Event(), threading.Event()
    keeper.start(stop, stopped.set)
    assert stopped.wait(10)
    keeper.join()
    assert isinstance(keeper.failure, KeyError)
