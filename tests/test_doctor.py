"""`lipsyncd doctor` as a subprocess: one line per check, exit 1 when one fails, test alerts to real robots."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from chat_server import DING_SECRET, FEISHU_SECRET, ChatServer
from conftest import REPO, env_for


def doctor(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", "doctor", *args], cwd=REPO, env=env_for(root, **env),
                          capture_output=True, text=True, timeout=120)


def lines(out: str) -> dict[str, str]:
    """check name → its line's verdict and text, e.g. {'ffmpeg': 'PASS /usr/bin/ffmpeg: ...'}."""
    found = {}
    for line in out.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("PASS", "FAIL", "SKIP"):
            name, _, text = rest.partition(": ")
            found[name] = f"{verdict} {text}"
    return found


def test_a_healthy_box_passes_every_check_and_exits_0(root: Path) -> None:
    done = doctor(root)
    assert done.returncode == 0, done.stdout + done.stderr
    got = lines(done.stdout)
    for name in ("config", "share", "disk", "ffmpeg", "ffprobe", "ffmpeg codecs"):
        assert got[name].startswith("PASS"), got[name]
    assert "libx264" in got["ffmpeg codecs"] and "aresample" in got["ffmpeg codecs"]
    # the copy engine runs on the CPU: no GPU is a SKIP that says so (a GPU machine gets a PASS line)
    assert got["gpu"].startswith(("PASS", "SKIP")) and ("runs on the CPU" in got["gpu"] or "GB free" in got["gpu"])
    assert got["wav2lip checkpoint"].startswith("SKIP") and "empty" in got["wav2lip checkpoint"]
    assert got["alert channels"].startswith("SKIP")
    assert done.stdout.rstrip().endswith("all checks passed")
    assert (root / "inbox").is_dir()  # the share check prepared the folders


def test_missing_ffmpeg_fails_and_exits_1(root: Path) -> None:
    done = doctor(root, LIPSYNCD_MEDIA_FFMPEG="/nonexistent/ffmpeg")
    assert done.returncode == 1
    got = lines(done.stdout)
    assert got["ffmpeg"].startswith("FAIL") and "not found" in got["ffmpeg"]
    assert got["ffprobe"].startswith("PASS")  # every check still runs and reports
    assert "check(s) FAILED" in done.stdout


def test_an_ffmpeg_without_libx264_fails_naming_what_is_missing(root: Path, tmp_path: Path) -> None:
    """A real stand-in executable: the system ffmpeg with libx264 and the fps filter taken out of its lists."""
    fake = tmp_path / "ffmpeg-lite"
    fake.write_text('#!/bin/sh\nffmpeg "$@" | grep -v -E " (libx264|fps) "\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    done = doctor(root, LIPSYNCD_MEDIA_FFMPEG=str(fake))
    assert done.returncode == 1
    codecs = lines(done.stdout)["ffmpeg codecs"]
    assert codecs.startswith("FAIL") and "encoders: libx264" in codecs and "filters: fps" in codecs
    assert "aac" not in codecs.split("lacks", 1)[1].split(";")[0]  # only what is really missing is named


def test_share_on_a_missing_folder_and_wav2lip_without_checkpoint_fail(tmp_path: Path) -> None:
    done = doctor(tmp_path / "not-mounted", LIPSYNCD_WORKER_ENGINE="wav2lip")
    assert done.returncode == 1
    got = lines(done.stdout)
    assert got["share"].startswith("FAIL") and "does not exist" in got["share"]
    assert got["wav2lip checkpoint"].startswith("FAIL") and "engines.wav2lip.checkpoint is empty" in \
        got["wav2lip checkpoint"]
    if "runs on the CPU" in got["gpu"] or "NVML" in got["gpu"]:  # no GPU here: wav2lip would crawl
        assert got["gpu"].startswith("FAIL") and "slower" in got["gpu"]


def test_a_checkpoint_path_that_does_not_exist_fails(root: Path, tmp_path: Path) -> None:
    done = doctor(root, LIPSYNCD_ENGINES_WAV2LIP_CHECKPOINT=str(tmp_path / "wav2lip_gan.pth"))
    assert done.returncode == 1
    line = lines(done.stdout)["wav2lip checkpoint"]
    assert line.startswith("FAIL") and "wav2lip_gan.pth: no such file" in line


def test_send_test_alert_reaches_every_robot_and_reports_a_broken_one(root: Path) -> None:
    chat = ChatServer(ding_keyword="lipsyncd").start()
    try:
        good = doctor(root, "--send-test-alert", LIPSYNCD_ALERTS_DINGTALK_WEBHOOK=chat.dingtalk_url,
                      LIPSYNCD_ALERTS_DINGTALK_SECRET=DING_SECRET, LIPSYNCD_ALERTS_DINGTALK_KEYWORD="lipsyncd",
                      LIPSYNCD_ALERTS_FEISHU_WEBHOOK=chat.feishu_url, LIPSYNCD_ALERTS_FEISHU_SECRET=FEISHU_SECRET,
                      LIPSYNCD_ALERTS_WECOM_WEBHOOK=chat.wecom_url, LIPSYNCD_GENERAL_LANGUAGE="zh")
        assert good.returncode == 0, good.stdout + good.stderr
        got = lines(good.stdout)
        assert got["alert channels"].startswith("PASS") and "dingtalk" in got["alert channels"]
        for channel in ("dingtalk", "wecom", "feishu"):
            assert got[f"test alert {channel}"] == "PASS delivered"
            assert any("测试告警" in t or "通道工作正常" in t for t in chat.texts(channel))
        assert len(chat.received) == 3

        broken = doctor(root, "--send-test-alert", LIPSYNCD_ALERTS_WECOM_WEBHOOK=chat.wecom_url + "-wrong",
                        LIPSYNCD_ALERTS_WEBHOOK_URL=chat.webhook_url)
        assert broken.returncode == 1
        got = lines(broken.stdout)
        assert got["test alert wecom"].startswith("FAIL broken, code 93000")
        assert got["test alert webhook"] == "PASS delivered"
        for secret in ("wecom-key", DING_SECRET):
            assert secret not in broken.stdout + broken.stderr
    finally:
        chat.down()


def test_doctor_exits_78_on_a_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[status]\ninterval_s = 0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNCD_")}
    done = subprocess.run([sys.executable, "-m", "daemon", "--config", str(cfg), "doctor"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78 and "status.interval_s" in done.stderr
