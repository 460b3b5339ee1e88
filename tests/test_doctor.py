"""`lipsyncd doctor` as a subprocess: one line per check, exit 1 when one fails, test alerts to real robots."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from chat_server import DING_SECRET, FEISHU_SECRET, ChatServer
from conftest import REPO, env_for

from daemon.core.share import Share


def doctor(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", "doctor", *args], cwd=REPO, env=env_for(root, **env),
                          capture_output=True, text=True, timeout=120)


def lines(out: str) -> dict[str, str]:
    """check name → its line's verdict and text, e.g. {'ffmpeg': 'PASS /usr/bin/ffmpeg: ...'}."""
    found = {}
    for line in out.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("PASS", "FAIL", "SKIP", "WARN"):
            name, _, text = rest.partition(": ")
            found[name] = f"{verdict} {text}"
    return found


def test_a_healthy_box_passes_every_check_and_exits_0(root: Path) -> None:
    Share(root).prepare()
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
    assert got["worker stack"].startswith("PASS")
    assert done.stdout.rstrip().endswith("all checks passed")


def test_missing_ffmpeg_fails_and_exits_1(root: Path) -> None:
    Share(root).prepare()
    done = doctor(root, LIPSYNCD_MEDIA_FFMPEG="/nonexistent/ffmpeg")
    assert done.returncode == 1
    got = lines(done.stdout)
    assert got["ffmpeg"].startswith("FAIL") and "not found" in got["ffmpeg"]
    assert got["ffprobe"].startswith("PASS")  # every check still runs and reports
    assert "check(s) FAILED" in done.stdout


def test_an_ffmpeg_without_libx264_fails_naming_what_is_missing(root: Path, tmp_path: Path) -> None:
    """A real stand-in executable: the system ffmpeg with libx264 and the fps filter taken out of its lists."""
    Share(root).prepare()
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
    Share(root).prepare()
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


def test_doctor_changes_nothing_by_default_and_skips_what_depends_on_a_missing_share(tmp_path: Path) -> None:
    empty = tmp_path / "share"
    empty.mkdir()
    done = doctor(empty)
    assert done.returncode == 1
    got = lines(done.stdout)
    assert got["share"].startswith("FAIL") and "inbox/, staging/" in got["share"] and "--fix" in got["share"]
    assert list(empty.iterdir()) == []  # read-only: not one folder created
    missing = doctor(tmp_path / "not-mounted")
    got = lines(missing.stdout)
    assert got["share"] == f"FAIL share.root = {tmp_path / 'not-mounted'} does not exist: mount the share there " \
                           "or set share.root (or --root / LIPSYNCD_ROOT) to the right folder"
    assert got["disk"] == "SKIP not checked: needs share, which did not pass"  # not a raw errno
    assert "Errno" not in missing.stdout


def test_fix_creates_the_folders_with_the_share_owner_not_root(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    if os.geteuid() == 0:
        os.chown(share, 65534, 65534)  # the service user's share, doctor run by root
    done = doctor(share, "--fix")
    assert done.returncode == 0, done.stdout
    got = lines(done.stdout)
    assert got["share"].startswith("PASS created inbox, staging, processing, done, failed, .lipsyncd")
    if os.geteuid() == 0:
        assert got["running as root"].startswith("WARN") and "share root's owner" in got["running as root"]
        owners = {(p.stat().st_uid, p.stat().st_gid) for p in [*share.iterdir(), *(share / ".lipsyncd").rglob("*")]}
        assert owners == {(65534, 65534)}
    assert lines(doctor(share).stdout)["share"].startswith("PASS folders present")


def test_textfile_and_outbox_folders_are_checked_and_only_the_outbox_is_made_by_fix(root: Path,
                                                                                   tmp_path: Path) -> None:
    Share(root).prepare()
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    outbox = tmp_path / "outbox" / "alerts"
    done = doctor(root, LIPSYNCD_WATCHDOG_TEXTFILE_DIR=str(a_file), LIPSYNCD_ALERTS_OUTBOX_DIR=str(outbox))
    got = lines(done.stdout)
    assert got["metrics textfile"].startswith(f"FAIL watchdog.textfile_dir = {a_file}: not a folder")
    assert got["alert outbox"].startswith(f"FAIL alerts.outbox_dir = {outbox}: no such folder")
    assert not outbox.exists()
    fixed = doctor(root, "--fix", LIPSYNCD_WATCHDOG_TEXTFILE_DIR=str(tmp_path), LIPSYNCD_ALERTS_OUTBOX_DIR=str(outbox))
    got = lines(fixed.stdout)
    assert got["metrics textfile"].startswith(f"PASS {tmp_path} is writable") and outbox.is_dir()
    assert got["alert outbox"].startswith(f"PASS {outbox} is writable")


def test_a_supervisord_socket_that_is_missing_or_dead_fails(root: Path, tmp_path: Path) -> None:
    import socket

    Share(root).prepare()
    sock = tmp_path / "supervisor.sock"
    env = {"LIPSYNCD_WATCHDOG_PROCESS_MANAGER": "supervisord", "LIPSYNCD_WATCHDOG_SUPERVISORD_URL": f"unix://{sock}"}
    assert "no such socket" in lines(doctor(root, **env).stdout)["process manager"]
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    server.listen(1)
    try:  # something listens there, but it is no supervisord: it never answers XML-RPC
        got = lines(doctor(root, LIPSYNCD_WATCHDOG_MANAGER_TIMEOUT_S="2", **env).stdout)["process manager"]
        assert got.startswith(f"FAIL supervisord at unix://{sock} does not answer"), got
    finally:
        server.close()
    assert "cannot connect" in lines(doctor(root, **env).stdout)["process manager"]  # bound, nobody listening


def test_doctor_json_has_every_verdict_for_machines(root: Path) -> None:
    import json

    Share(root).prepare()
    done = doctor(root, "--json", LIPSYNCD_MEDIA_FFMPEG="/nonexistent/ffmpeg")
    report = json.loads(done.stdout)  # nothing but the JSON object on stdout
    assert done.returncode == 1 and report["ok"] is False and report["failed"] == 1
    verdicts = {c["name"]: c for c in report["checks"]}
    assert verdicts["ffmpeg"]["status"] == "FAIL" and "not found" in verdicts["ffmpeg"]["detail"]
    assert verdicts["ffmpeg codecs"] == {"name": "ffmpeg codecs", "status": "SKIP",
                                         "detail": "not checked: needs ffmpeg, which did not pass"}
    assert verdicts["share"]["status"] == "PASS"
