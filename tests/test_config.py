"""Config is validated once: syntax errors name file/line/column, bad values name the key, exit 78."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from daemon.core import settings
from daemon.core.config import Config, load_config
from daemon.core.errors import ConfigError


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNCD_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=REPO, env=base, capture_output=True,
                          text=True, timeout=60)


def test_toml_syntax_error_names_file_line_and_column_and_exits_78(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[intake]\nsettle_s = 5\nscan_interval_s = = 2\n')
    done = run_cli("--config", str(cfg), "status")
    assert done.returncode == 78
    assert str(cfg) in done.stderr
    assert "line 3, column" in done.stderr


def test_bad_value_names_key_path_and_what_is_allowed(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[intake]\nduplicate_policy = "sometimes"\n')
    with pytest.raises(ConfigError) as info:
        load_config(str(cfg), env={})
    message = str(info.value)
    assert "intake.duplicate_policy" in message and "'skip'" in message and str(cfg) in message


def test_unknown_key_suggests_the_near_miss(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[intake]\nsetle_s = 3\n')
    with pytest.raises(ConfigError, match=r"intake\.setle_s.*did you mean 'settle_s'"):
        load_config(str(cfg), env={})


def test_wrong_type_and_out_of_range_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[worker]\nmax_attempts = "three"\n')
    with pytest.raises(ConfigError, match=r"worker\.max_attempts.*whole number"):
        load_config(str(cfg), env={})
    cfg.write_text('[worker]\nmax_attempts = 0\n')
    with pytest.raises(ConfigError, match=r"worker\.max_attempts.*at least 1"):
        load_config(str(cfg), env={})


def test_environment_overrides_file_and_is_validated_like_it(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[intake]\nsettle_s = 5\n')
    config = load_config(str(cfg), env={"LIPSYNCD_INTAKE_SETTLE_S": "7.5",
                                        "LIPSYNCD_INTAKE_ALLOWED_ENGINES": "copy,warp"})
    assert config.intake.settle_s == 7.5
    assert config.intake.allowed_engines == ("copy", "warp")
    with pytest.raises(ConfigError, match="LIPSYNCD_INTAKE_SETTLE_S"):
        load_config(str(cfg), env={"LIPSYNCD_INTAKE_SETTLE_S": "soon"})
    with pytest.raises(ConfigError, match="LIPSYNCD_INTAKE_ALLOWED_ENGINES"):
        load_config(str(cfg), env={"LIPSYNCD_INTAKE_ALLOWED_ENGINES": "copy,magic"})


def test_root_override_and_config_env_var(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[share]\nroot = "{tmp_path / "a"}"\n')
    assert load_config(env={"LIPSYNCD_CONFIG": str(cfg)}).root == tmp_path / "a"
    assert load_config(env={"LIPSYNCD_CONFIG": str(cfg), "LIPSYNCD_ROOT": str(tmp_path / "b")}).root == tmp_path / "b"
    assert load_config(root=str(tmp_path / "c"), env={"LIPSYNCD_CONFIG": str(cfg)}).root == tmp_path / "c"


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    done = run_cli("--config", str(tmp_path / "nope.toml"), "status")
    assert done.returncode == 78 and "does not exist" in done.stderr


def test_shipped_config_lists_every_key_with_its_default() -> None:
    """The shipped config.toml documents every key, and its values are the built-in defaults."""
    import tomllib

    shipped = tomllib.loads((REPO / "config.toml").read_text())
    defaults = Config()
    for path, _kind, _field in settings.leaves(Config):
        node: object = shipped
        for part in path:
            assert isinstance(node, dict) and part in node, f"config.toml lacks {'.'.join(path)}"
            node = node[part]
        value: object = defaults
        for part in path:
            value = getattr(value, part)
        if isinstance(value, tuple):
            value = list(value)
        assert node == value, f"config.toml {'.'.join(path)} = {node!r}, default is {value!r}"
    assert load_config(str(REPO / "config.toml"), env={}) == Config()


def test_every_key_has_a_comment_in_the_shipped_config() -> None:
    lines = (REPO / "config.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "[")) and "=" in stripped:
            assert i > 0 and lines[i - 1].strip().startswith("#"), f"no comment above: {stripped}"


def test_help_lists_every_command() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for command in ("up", "intake", "worker", "watchdog", "status", "submit", "retry", "doctor", "probe"):
        assert command in done.stdout
