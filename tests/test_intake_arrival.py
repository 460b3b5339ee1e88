"""Fast local-disk versions of issue 12's arrival rules (the Samba versions are in tests/field/):
a half-written file is never accepted, a job's inputs are its own bytes, tickets sharing a file are
accepted in one pass."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import entries
from test_intake import make_intake, scans

from daemon.intake.completeness import header_verdict


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _waiting(root: Path) -> list[dict[str, object]]:
    return json.loads((root / ".lipsyncd" / "roles" / "intake.json").read_text())["waiting"]


def _cut(src: Path, dst: Path, fraction: float) -> bytes:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return data


@pytest.mark.parametrize("name", ["a.wav", "v.mp4"])
def test_media_cut_short_waits_as_still_arriving_then_is_accepted_when_complete(
        root: Path, media_dir: Path, name: str) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    other = "v.mp4" if name == "a.wav" else "a.wav"
    shutil.copy(media_dir / other, inbox / other)
    full = _cut(media_dir / name, inbox / name, 0.5)  # a copy that paused half-way, far beyond settle_s
    (inbox / "t.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
    scans(intake, clock, 20, every=10.0)  # 200 s unchanged: stable, but its own header says "more"
    assert entries(root / "staging") == [] and entries(root / "failed") == []
    [wait] = _waiting(root)
    assert wait["drop"] == "t.toml" and wait["deadline_code"] == "media_incomplete"
    assert [(f["name"], f["why"]) for f in wait["waits_for"]] == [(name, "incomplete")]
    with open(inbox / name, "ab") as fh:  # the copy resumes and finishes
        fh.write(full[len((inbox / name).read_bytes()):])
    scans(intake, clock, 4)
    [job] = entries(root / "staging")
    assert _digest(root / "staging" / job / "inputs" / name) == hashlib.sha256(full).hexdigest()


def test_media_that_stays_cut_short_fails_as_incomplete_after_the_grace_period(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root, LIPSYNCD_INTAKE_INCOMPLETE_GRACE_S="120")
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / "a.wav")
    _cut(media_dir / "v.mp4", inbox / "v.mp4", 0.6)
    (inbox / "t.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
    scans(intake, clock, 10, every=10.0)  # 90 s: still within the grace period
    assert entries(root / "failed") == []
    scans(intake, clock, 6, every=10.0)
    [job] = entries(root / "failed")
    error = (root / "failed" / job / "error.txt").read_text()
    assert "v.mp4 looks cut off" in error and "only" in error and "have arrived" in error
    assert sorted(entries(root / "failed" / job / "inputs")) == ["a.wav", "t.toml", "v.mp4"]


@pytest.mark.parametrize("kind", ["mkv", "aiff"])
def test_header_check_knows_matroska_and_aiff(tmp_path: Path, kind: str) -> None:
    from conftest import ffmpeg

    full = tmp_path / f"x.{kind}"
    source = ["-f", "lavfi", "-i", "sine=d=1"] if kind == "aiff" else [
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "1", "-c:v", "libx264", "-preset", "ultrafast"]
    ffmpeg(*source, str(full))
    assert header_verdict(full) is None
    _cut(full, tmp_path / f"part.{kind}", 0.6)
    assert "only" in (header_verdict(tmp_path / f"part.{kind}") or "")


HOLDER = "import sys; f = open(sys.argv[1], 'r+b'); print('open', flush=True); sys.stdin.read()"


def test_file_held_open_for_writing_is_not_settled_and_never_leaves_the_inbox(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / "a.wav")
    shutil.copy(media_dir / "v.mp4", inbox / "v.mp4")  # complete, but the copy still holds it open
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(inbox / "v.mp4")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"open"
        (inbox / "t.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
        scans(intake, clock, 12, every=5.0)
        assert entries(root / "staging") == [] and entries(root / "failed") == []
        assert sorted(entries(inbox)) == ["a.wav", "t.toml", "v.mp4"], "renamed while a writer had it open"
        [wait] = _waiting(root)
        [held] = wait["waits_for"]
        assert held["name"] == "v.mp4" and held["why"] == "open" and f"pid {holder.pid}" in held["detail"]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=20)
    scans(intake, clock, 4)
    assert len(entries(root / "staging")) == 1


def test_a_shared_file_gives_each_job_its_own_bytes_so_a_recopy_in_place_changes_no_job(
        root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "v.mp4", inbox / "teacher.mp4")
    shutil.copy(media_dir / "a.wav", inbox / "l1.wav")
    (inbox / "l1.toml").write_text('audio = "l1.wav"\nvideo = "teacher.mp4"\n')
    (inbox / "l2.toml").write_text('audio = "l2.wav"\nvideo = "teacher.mp4"\n')  # l2.wav still to come
    original = _digest(inbox / "teacher.mp4")
    scans(intake, clock, 4)
    [job] = entries(root / "staging")
    kept = root / "staging" / job / "inputs" / "teacher.mp4"
    assert kept.stat().st_ino != (inbox / "teacher.mp4").stat().st_ino
    assert kept.stat().st_nlink == 1 and (inbox / "teacher.mp4").stat().st_nlink == 1
    with open(inbox / "teacher.mp4", "r+b") as fh:  # the producer re-copies it in place (same inode)
        fh.write(b"\0" * 4096)
    assert _digest(kept) == original, "a re-copy in the inbox changed an accepted job's input"
    shutil.copy(media_dir / "a.wav", inbox / "l2.wav")
    scans(intake, clock, 4)
    assert len(entries(root / "staging")) == 2 and entries(inbox) == []


def test_batch_jobs_each_own_their_inputs(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / "script.wav")
    for name in ("p1.mp4", "p2.mp4"):
        shutil.copy(media_dir / "v.mp4", inbox / name)
    (inbox / "promo.toml").write_text('audio = "script.wav"\nvideos = ["p1.mp4", "p2.mp4"]\n')
    scans(intake, clock, 4)
    jobs = entries(root / "staging")
    assert len(jobs) == 2
    for job in jobs:
        for path in (root / "staging" / job / "inputs").iterdir():
            assert path.stat().st_nlink == 1, f"{job}/{path.name} shares its inode"
            assert not path.name.endswith(".part")


def test_tickets_sharing_a_file_are_accepted_in_one_pass(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "v.mp4", inbox / "teacher.mp4")
    for n in ("l1", "l2", "l3"):
        shutil.copy(media_dir / "a.wav", inbox / f"{n}.wav")
        (inbox / f"{n}.toml").write_text(f'audio = "{n}.wav"\nvideo = "teacher.mp4"\n')
    accepted_after = []
    for _ in range(7):
        intake.step()
        clock.t += 3.0
        accepted_after.append(len(entries(root / "staging")))
    first = next(i for i, n in enumerate(accepted_after) if n)
    assert accepted_after[first] == 3, f"accepted one by one: {accepted_after}"
    assert entries(inbox) == []  # the last one took the shared file by rename: nothing left behind
    for job in entries(root / "staging"):
        assert (root / "staging" / job / "inputs" / "teacher.mp4").stat().st_nlink == 1


def test_a_transaction_left_by_a_crash_mid_snapshot_is_cleared_without_touching_the_inbox(
        root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    txn = root / ".lipsyncd" / "intake" / "x-crashed" / "x-crashed" / "inputs"
    txn.mkdir(parents=True)
    (txn / ".teacher.mp4.part").write_bytes(b"half a copy")  # no plan.json: only our own files
    shutil.copy(media_dir / "v.mp4", root / "inbox" / "teacher.mp4")
    intake.start()
    assert list((root / ".lipsyncd" / "intake").iterdir()) == []
    assert _digest(root / "inbox" / "teacher.mp4") == _digest(media_dir / "v.mp4")


def test_the_probe_fallback_says_when_a_file_ends_early(tmp_path: Path, media_dir: Path) -> None:
    from daemon.intake.completeness import probe_verdict

    _cut(media_dir / "v.mp4", tmp_path / "part.mp4", 0.6)
    assert "moov atom not found" in (probe_verdict(tmp_path / "part.mp4") or "")
    assert probe_verdict(media_dir / "v.mp4") is None
