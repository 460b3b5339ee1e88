"""The shipped systemd units (in a booted systemd, systemd-nspawn) and the shipped supervisord program file
(a real supervisord, its socket in a non-default place), driven like an operator and a crash would:
a job to done/, `systemctl restart` / `supervisorctl restart` mid-job, kill -9 mid-job, kill -STOP mid-job
(the watchdog restarts it: polkit under systemd, XML-RPC under supervisord), a broken config.
Each job ends in done/ exactly once, resumed where a clean stop allows; figures go to RESULTS (a JSON line
per scenario) for RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from managers_lab import SupervisorLab, SystemdLab, boot_script, wait_until

pytestmark = pytest.mark.slow
RESULTS = Path(os.environ.get("LIPSYNCD_FIELD_RESULTS", "/tmp/lipsyncd-managers-field.jsonl"))
BROKEN = '[share]\nroot = "{root}"\n\n[worker]\nengine = "copy"\npoll_interval_s = = 1\n'


def _record(lab: object, scenario: str, **figures: object) -> None:
    line = {"manager": lab.kind, "scenario": scenario, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
            **figures}
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(json.dumps(line))


@pytest.fixture(scope="module")
def systemd_lab() -> Iterator[SystemdLab]:
    script = boot_script()
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None or script is None:
        pytest.skip("needs root, systemd-nspawn and shared/field-lab/boot-systemd.sh (see shared/field-lab/README.md)")
    lab = SystemdLab(Path(os.environ.get("LIPSYNCD_LAB_SYSTEMD", "/tmp/field-lab/systemd")))
    booted = lab.boot(script)
    out = lab.install()
    assert "Left to do" in out and "chown -R lipsyncd:" in out, out
    yield lab
    lab.stop()
    if booted:
        lab.poweroff()


@pytest.fixture(params=["systemd", "supervisord"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SystemdLab | SupervisorLab]:
    if request.param == "systemd":
        yield request.getfixturevalue("systemd_lab")
        return
    if not (Path(os.sys.executable).parent / "supervisord").exists():
        pytest.skip("supervisord is not installed in the venv (the test extra)")
    sup = SupervisorLab(tmp_path)
    yield sup
    sup.close()


def _drop(lab: SystemdLab | SupervisorLab, media: Path) -> None:
    inbox = lab.share / "inbox"
    wait_until(inbox.is_dir, 120, "intake to prepare the share")
    for suffix in ("wav", "mp4"):
        shutil.copy(media / f"talk.{suffix}", inbox / f"talk.{suffix}")
    (inbox / ".talk.toml.tmp").write_text('audio = "talk.wav"\nvideo = "talk.mp4"\n')
    (inbox / ".talk.toml.tmp").rename(inbox / "talk.toml")


def _mid_job(lab: SystemdLab | SupervisorLab, segments: int) -> None:
    def writing() -> bool:
        jobs = [j for j in (lab.share / "processing").glob("*") if not j.name.startswith(".")]
        return bool(jobs) and len(list((jobs[0] / "work").glob("seg_*.mp4"))) >= segments
    wait_until(writing, 240, f"the worker to write segment {segments}")


def _done_once(lab: SystemdLab | SupervisorLab) -> dict[str, object]:
    def names(state: str) -> list[str]:
        folder = lab.share / state
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    try:
        wait_until(lambda: len(names("done")) == 1 and not names("processing"), 300, "the job in done/")
    except AssertionError:
        raise AssertionError(f"failed/={names('failed')} staging/={names('staging')}\n{lab.log()}") from None
    assert names("failed") == [] and names("staging") == [], lab.log()
    folder = lab.share / "done" / names("done")[0]
    assert [p.name for p in folder.iterdir() if p.suffix == ".mp4"] == ["talk.mp4"]
    report = json.loads((folder / "report.json").read_text())
    events = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]
    return {"report": report, "events": events}


def _new_worker(lab: SystemdLab | SupervisorLab, old: int | None, since: float) -> float:
    wait_until(lambda: lab.worker_pid() not in (None, old), 300, "a new worker process")
    return round(time.monotonic() - since, 1)


def test_a_job_reaches_done(lab: SystemdLab | SupervisorLab, media_dir: Path) -> None:
    lab.fresh()
    lab.start()
    started = time.monotonic()
    _drop(lab, media_dir)
    done = _done_once(lab)
    _record(lab, "job to done", seconds=round(time.monotonic() - started, 1),
            attempts=done["report"]["attempts"])


def test_restart_mid_job_resumes_and_finishes_once(lab: SystemdLab | SupervisorLab, media_dir: Path) -> None:
    lab.fresh()
    lab.start()
    _drop(lab, media_dir)
    _mid_job(lab, 1)
    old, at = lab.worker_pid(), time.monotonic()
    lab.restart_worker()
    took = _new_worker(lab, old, at)
    done = _done_once(lab)
    stats = done["report"]["stats"]
    assert (stats.get("resumed_from") or 0) > 0, done["report"]  # put back after a whole chunk, not redone
    assert not any(e.get("event") == "failed" for e in done["events"])
    _record(lab, "restart mid-job", restart_s=took, resumed_from=stats["resumed_from"],
            attempts=done["report"]["attempts"], outcome="done once")


def test_kill_9_mid_job_is_restarted_and_finishes_once(lab: SystemdLab | SupervisorLab, media_dir: Path) -> None:
    lab.fresh()
    lab.start()
    _drop(lab, media_dir)
    _mid_job(lab, 2)  # no clean stop: only whole segments can be kept
    old, at = lab.worker_pid(), time.monotonic()
    lab.signal_worker(signal.SIGKILL)
    took = _new_worker(lab, old, at)
    done = _done_once(lab)
    _record(lab, "kill -9 mid-job", restart_s=took, resumed_from=done["report"]["stats"].get("resumed_from"),
            attempts=done["report"]["attempts"], outcome="done once")


def test_sigstopped_worker_is_restarted_by_the_watchdog_and_finishes_once(
        lab: SystemdLab | SupervisorLab, media_dir: Path) -> None:
    lab.fresh()
    lab.start()
    _drop(lab, media_dir)
    _mid_job(lab, 1)
    old, at = lab.worker_pid(), time.monotonic()
    lab.signal_worker(signal.SIGSTOP)
    took = _new_worker(lab, old, at)
    done = _done_once(lab)
    [restart] = [e for e in done["events"] if e.get("event") == "watchdog_restart"]
    assert restart["by"] == "watchdog" and restart["manager"] == lab.kind, restart  # a refused one is another event
    _record(lab, "kill -STOP mid-job (watchdog restart)", restart_s=took, chunk_limit_s=20,
            resumed_from=done["report"]["stats"].get("resumed_from"), attempts=done["report"]["attempts"],
            outcome="done once")


def test_broken_config_stops_intake_and_workers_and_the_watchdog_alerts(lab: SystemdLab | SupervisorLab) -> None:
    lab.fresh()
    lab.start()
    wait_until((lab.share / ".lipsyncd").is_dir, 120, "a prepared share")
    lab.stop()
    root = "/srv/lipsyncd" if lab.kind == "systemd" else str(lab.share)
    lab.fresh(config=BROKEN.format(root=root), wipe=False)  # broken later
    lab.start()
    journals = lab.share / ".lipsyncd" / "logs"  # one alerts.jsonl per host: logs/<host>/alerts.jsonl

    def alerted() -> str:
        text = "".join(p.read_text() for p in journals.glob("*/alerts.jsonl"))
        return text if "configuration error" in text else ""
    text = wait_until(alerted, 120, f"the configuration alert in {journals}/<host>/alerts.jsonl")
    assert "line 6, column 19" in text, text
    time.sleep(15)  # no restart loop: they stay down
    states = {}
    if isinstance(lab, SystemdLab):
        for unit in ("lipsyncd-intake", "lipsyncd-worker@0"):
            props = lab.show(unit)
            assert props["ExecMainStatus"] == "78" and props["NRestarts"] == "0", (unit, props)
            states[unit] = f"{props['ActiveState']}, exit {props['ExecMainStatus']}, {props['NRestarts']} restarts"
        assert lab.show("lipsyncd-watchdog")["ActiveState"] == "active"
    else:
        # an exit within startsecs is a failed start to supervisord whatever its code (exitcodes= does not
        # apply): a few quick tries, then FATAL, which the watchdog reports as "needs a human"
        for name in ("lipsyncd:lipsyncd-intake", "lipsyncd-worker:lipsyncd-worker-0"):
            info = wait_until(lambda name=name: (i := lab.info(name)).get("statename") in ("EXITED", "FATAL")
                              and i, 120, f"{name} to stay down")
            assert info["exitstatus"] == 78 or "exit status 78" in str(info.get("spawnerr", "")) \
                or info["statename"] == "FATAL", info
            states[name] = f"{info['statename']}, exit {info['exitstatus']}"
        assert lab.info("lipsyncd:lipsyncd-watchdog")["statename"] == "RUNNING"
    assert text.count("configuration error") <= 2  # one alert (its line may repeat the phrase once)
    _record(lab, "broken config", states=states, alert="one 'configuration error' alert, line and column")


def test_doctor_checks_that_the_watchdog_can_reach_its_manager(lab: SystemdLab | SupervisorLab) -> None:
    lab.fresh()
    if isinstance(lab, SystemdLab):
        out = lab.sh("/opt/lipsyncd/venv/bin/lipsyncd doctor --config /etc/lipsyncd/config.toml", check=False)
        assert "PASS process manager: polkit lets lipsyncd restart lipsyncd-worker@0.service" in out, out
        lab.sh("mv /etc/polkit-1/rules.d/50-lipsyncd.rules /root/")
        try:
            out = lab.sh("/opt/lipsyncd/venv/bin/lipsyncd doctor --config /etc/lipsyncd/config.toml", check=False)
        finally:
            lab.sh("mv /root/50-lipsyncd.rules /etc/polkit-1/rules.d/")
        assert "FAIL process manager: polkit does not let lipsyncd restart" in out, out
        return
    import subprocess
    import sys

    doctor = [sys.executable, "-m", "daemon", "--config", str(lab.config_path), "doctor"]
    env = {**lab.env, "SUPERVISOR_SERVER_URL": lab.url}
    out = subprocess.run(doctor, env=env, capture_output=True, text=True, timeout=120).stdout
    assert f"FAIL process manager: {lab.url}: no such socket" in out, out  # supervisord is not running
    lab.start()
    out = subprocess.run(doctor, env=env, capture_output=True, text=True, timeout=120).stdout
    assert f"PASS process manager: supervisord at {lab.url} answers (RUNNING)" in out, out
