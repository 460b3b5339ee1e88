"""`lipsyncd config` prints what the roles would run with; a mistyped LIPSYNCD_* variable is warned about."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomllib
from conftest import REPO, env_for

from daemon.core.config import load_config


def cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=REPO, env=env_for(root, **env),
                          capture_output=True, text=True, timeout=120)


def test_a_mistyped_variable_is_warned_about_at_start_with_the_likely_name(root: Path) -> None:
    done = cli(root, "config", LIPSYNCD_INTAKE_SETLE_S="3", LIPSYNCD_WORKER_LEASE_S="45")
    assert done.returncode == 0, done.stderr
    assert ("environment variable LIPSYNCD_INTAKE_SETLE_S is not a lipsyncd setting and is ignored "
            "(did you mean LIPSYNCD_INTAKE_SETTLE_S?)") in done.stderr
    assert "LIPSYNCD_WORKER_LEASE_S" not in done.stderr and "LIPSYNCD_ROOT" not in done.stderr
    assert done.stderr.count("WARNING") == 1


def test_config_prints_valid_toml_of_the_effective_values_with_origins_and_masked_secrets(root: Path,
                                                                                       tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[intake]\norphan_timeout_min = 33.5\n[alerts.feishu]\nwebhook = "https://open.feishu.cn/hook/SECRET-1"\n'
                   'secret = "SECRET-2"\n')
    done = cli(root, "--config", str(cfg), "config", LIPSYNCD_ALERTS_DINGTALK_SECRET="SECRET-3",
               LIPSYNCD_WORKER_LEASE_S="45")
    assert done.returncode == 0, done.stderr
    assert "SECRET-" not in done.stdout
    shown = tomllib.loads(done.stdout)  # valid TOML, one table per section
    real = load_config(str(cfg), env={"LIPSYNCD_ROOT": str(root), "LIPSYNCD_WORKER_LEASE_S": "45"})
    assert shown["intake"]["orphan_timeout_min"] == real.intake.orphan_timeout_min == 33.5
    assert shown["intake"]["settle_s"] == 0.3  # the environment wins over the file
    assert shown["worker"]["lease_s"] == 45.0 and shown["share"]["root"] == str(root)
    assert shown["alerts"]["feishu"]["secret"] == "********" and shown["alerts"]["dingtalk"]["secret"] == "********"
    assert shown["alerts"]["wecom"]["webhook"] == ""  # empty stays visibly empty: "not set"
    lines = done.stdout.splitlines()
    assert "orphan_timeout_min = 33.5  # from file" in lines
    assert "settle_s = 0.3  # from LIPSYNCD_INTAKE_SETTLE_S" in lines
    assert "lease_s = 45.0  # from LIPSYNCD_WORKER_LEASE_S" in lines
    assert f'root = "{root}"  # from LIPSYNCD_ROOT' in lines
    as_json = json.loads(cli(root, "--config", str(cfg), "config", "--json").stdout)
    assert as_json["intake.orphan_timeout_min"] == {"value": 33.5, "from": "file"}
    assert as_json["alerts.feishu.webhook"]["value"] == "********"
