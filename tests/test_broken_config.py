"""A broken config.toml still raises an alert: the watchdog starts on what it can read and sends one
"configuration error: <file, line, column>" alert, while intake and workers exit 78 as before.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from chat_server import ChatServer
from conftest import REPO, env_for, wait_for

from daemon.sentinel.fallback import fallback_config, readable_sections

BROKEN_INTAKE = """
[share]
root = "{root}"

[intake]
settle_s = 0.3
scan_interval_s = = 2

[alerts.webhook]
url = "{url}"

[watchdog]
gpu_check = false
interval_s = 0.2
"""


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "daemon", *args], cwd=REPO, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def test_watchdog_on_a_syntax_error_runs_and_sends_one_alert_with_line_and_column(
        tmp_path: Path, root: Path, chat: ChatServer) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text(BROKEN_INTAKE.format(root=root, url=chat.webhook_url))
    env = {k: v for k, v in env_for(root).items() if k != "LIPSYNCD_ROOT"}
    intake = subprocess.run([sys.executable, "-m", "daemon", "--config", str(conf), "intake"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=60)
    assert intake.returncode == 78 and "line 7, column 19" in intake.stderr, intake.stderr
    watchdog = _start(["--config", str(conf), "watchdog"], env, tmp_path / "watchdog.log")
    try:
        wait_for(lambda: len(chat.received) >= 1, 60, "the configuration alert")
        [alert] = chat.received
        text = str(alert.body)
        assert "configuration error" in text and str(conf) in text and "line 7, column 19" in text, text
        assert watchdog.poll() is None  # still watching, on [share], [alerts.*] and [watchdog]
        assert f"watching {root}" in (tmp_path / "watchdog.log").read_text()  # the root from [share]
    finally:
        watchdog.send_signal(signal.SIGTERM)
        code = watchdog.wait(30)
    assert code == 0, (tmp_path / "watchdog.log").read_text()
    assert len(chat.received) == 1  # one alert, not one per pass


def test_a_broken_alerts_section_falls_back_to_the_environment(tmp_path: Path, root: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text(f'[share]\nroot = "{root}"\n[alerts.dingtalk]\nwebhook = "https://x\n[watchdog]\nbad_key = 1\n')
    env = {"LIPSYNCD_ALERTS_DINGTALK_WEBHOOK": "https://oapi.example/robot/send?access_token=t"}
    config = fallback_config(str(conf), None, env)
    assert str(config.root) == str(root)  # [share] was readable
    assert config.alerts.dingtalk.webhook == env["LIPSYNCD_ALERTS_DINGTALK_WEBHOOK"]
    assert readable_sections("[intake]\nx = = 1\n[general]\nlanguage = 'zh'\n") == {"general": {"language": "zh"}}
