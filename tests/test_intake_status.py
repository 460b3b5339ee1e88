"""A waiting drop is visible (issue 12 item 5): what it waits for, since when and its deadline, in
status.json (the snapshot), STATUS.html and `lipsyncd status`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from conftest import Roles, env_for, wait_for
from test_intake import make_intake, scans

from daemon import console
from daemon.core import snapshot
from daemon.housekeeping import page


def test_waiting_drops_are_listed_with_reason_and_deadline_everywhere(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root, LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN="60")
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / "l1.wav")
    (inbox / "l1.toml").write_text('audio = "l1.wav"\nvideo = "teacher<b>.mp4"\n')
    data = (media_dir / "v.mp4").read_bytes()
    (inbox / "l2.mp4").write_bytes(data[: len(data) // 2])
    shutil.copy(media_dir / "a.wav", inbox / "l2.wav")
    (inbox / "l2.toml").write_text('audio = "l2.wav"\nvideo = "l2.mp4"\n')
    before = time.time()
    scans(intake, clock, 4)
    snap = snapshot.collect(root)
    waits = {w["drop"]: w for w in snap["waiting"]}
    assert set(waits) == {"l1.toml", "l2.toml"}
    assert waits["l1.toml"]["waits_for"] == [{"name": "teacher<b>.mp4", "why": "missing", "detail": ""}]
    assert waits["l1.toml"]["deadline_code"] == "files_missing"
    assert before + 3500 < waits["l1.toml"]["deadline"] < before + 3700  # 60 min after its last change
    assert waits["l2.toml"]["waits_for"][0]["why"] == "incomplete"
    html = page.render(snap, "en")
    assert 'id="waiting"' in html and "teacher&lt;b&gt;.mp4: not there yet" in html
    assert "rejected at" in html and "as never arrived" in html and "fails at" in html
    assert "<b>.mp4" not in html
    text = console.render(snap, str(root), width=120)
    assert "WAITING IN INBOX (2)" in text and "l2.mp4: looks incomplete" in text
    assert "尚未到达" in page.render(snap, "zh")


def test_lipsyncd_status_shows_a_waiting_drop_from_a_running_intake(root: Path, roles: Roles) -> None:
    import subprocess
    import sys

    from conftest import REPO

    (root / "inbox").mkdir()
    (root / "inbox" / "early.toml").write_text('audio = "early.wav"\nvideo = "early.mp4"\n')
    env = env_for(root)
    roles.start("intake", env=env)
    status = root / ".lipsyncd" / "roles" / "intake.json"
    wait_for(lambda: status.is_file() and "early.toml" in status.read_text(), 180, "intake to list the drop")
    out = subprocess.run([sys.executable, "-m", "daemon", "status"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=180)
    assert "WAITING IN INBOX (1)" in out.stdout and "early.wav: not there yet" in out.stdout, out.stdout + out.stderr
