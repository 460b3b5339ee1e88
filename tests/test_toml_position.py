"""A TOML mistake at the very end of a ticket or config still gets a real line and column."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Roles, entries, env_for, wait_for

from daemon.core import tomlpos
from daemon.core.config import read_toml
from daemon.core.errors import ConfigError


@pytest.mark.parametrize(("text", "line", "column"), [
    ('audio = "a.wav"\nvideo = "v.mp4', 2, 15),  # unterminated string: the copy stopped early
    ('audio = "a.wav"\nvideo', 2, 6),
    ('audio = "a.wav"\nvideo =\n', 2, 8),  # a trailing newline does not move the place
    ('audio = "a.wav"\nvideo = = "x"\n', 2, 9),  # tomllib's own position is kept
])
def test_position_of_errors_at_the_end_and_elsewhere(text: str, line: int, column: int) -> None:
    import tomllib

    with pytest.raises(tomllib.TOMLDecodeError) as exc:
        tomllib.loads(text)
    reason, got_line, got_column = tomlpos.locate(str(exc.value), text)
    assert (got_line, got_column) == (line, column) and "(at" not in reason


def test_config_error_names_line_and_column_of_a_cut_off_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[share]\nroot = "/srv/lipsyncd')
    with pytest.raises(ConfigError, match=r"TOML syntax error at line 2, column 22: Unterminated string"):
        read_toml(cfg)


def test_a_ticket_cut_off_at_its_end_fails_with_line_and_column_in_error_txt(root: Path, roles: Roles) -> None:
    roles.start("intake", env=env_for(root))
    wait_for(lambda: (root / "inbox").is_dir(), 60, "share folders")
    (root / "inbox" / "lesson.toml").write_text('audio = "lesson.wav"\nvideo = "teacher.mp4')
    wait_for(lambda: entries(root / "failed"), 60, "the ticket rejected")
    error = (root / "failed" / entries(root / "failed")[0] / "error.txt").read_text()
    assert "(line 2, column 21)" in error and "?" not in error
