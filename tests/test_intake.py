"""Intake decisions on real folders with an injected clock: settling, drop forms, batches, duplicates."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import drop_job, entries

from daemon.core import history
from daemon.core.config import load_config
from daemon.core.share import Share
from daemon.intake.role import Intake


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_intake(root: Path, **env: str) -> tuple[Intake, Clock]:
    base = {"LIPSYNCD_INTAKE_SETTLE_S": "5", "LIPSYNCD_INTAKE_SETTLE_SCANS": "2",
            "LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN": "10", "LIPSYNCD_WORKER_ENGINE": "copy"}
    base.update(env)
    config = load_config(root=str(root), env=base)
    share = Share(root)
    share.prepare()
    clock = Clock()
    intake = Intake(config, share, clock=clock)
    intake.start()
    return intake, clock


def scans(intake: Intake, clock: Clock, n: int, every: float = 3.0) -> None:
    for _ in range(n):
        intake.step()
        clock.t += every


def staged_specs(root: Path) -> list[dict[str, object]]:
    return [json.loads((root / "staging" / j / "job.json").read_text()) for j in entries(root / "staging")]


def test_growing_media_is_not_accepted_until_stable(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    drop_job(root, "grow", media_dir / "a.wav", media_dir / "v.mp4")
    video = root / "inbox" / "grow.mp4"
    for i in range(6):  # the copy is still running: the file grows between every scan
        with open(video, "ab") as fh:
            fh.write(b"\0" * 1000)
        intake.step()
        clock.t += 10.0
        assert entries(root / "staging") == [], f"accepted while growing (scan {i})"
    scans(intake, clock, 3)
    assert len(entries(root / "staging")) == 1
    assert entries(root / "inbox") == []


def test_settle_needs_both_time_and_scans(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    drop_job(root, "quick", media_dir / "a.wav", media_dir / "v.mp4")
    scans(intake, clock, 4, every=1.0)  # 4 identical scans but only 3 s elapsed (< 5 s)
    assert entries(root / "staging") == []
    scans(intake, clock, 3, every=1.0)
    assert len(entries(root / "staging")) == 1


def test_copy_that_keeps_old_mtime_is_still_settled_by_observation(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    drop_job(root, "old", media_dir / "a.wav", media_dir / "v.mp4")
    for name in ("old.wav", "old.mp4", "old.toml"):
        os.utime(root / "inbox" / name, (1_000_000, 1_000_000))  # cp -p / robocopy /COPY:DAT
    intake.step()
    assert entries(root / "staging") == [], "an old mtime must not count as 'already stable'"
    scans(intake, clock, 3)
    assert len(entries(root / "staging")) == 1


def test_ticket_first_media_later(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    (root / "inbox" / "early.toml").write_text('audio = "early.wav"\nvideo = "early.mp4"\n')
    scans(intake, clock, 5)
    assert entries(root / "staging") == [] and entries(root / "failed") == []
    shutil.copy(media_dir / "a.wav", root / "inbox" / "early.wav")
    scans(intake, clock, 3)
    assert entries(root / "staging") == []
    shutil.copy(media_dir / "v.mp4", root / "inbox" / "early.mp4")
    scans(intake, clock, 4)
    assert len(entries(root / "staging")) == 1


def test_temporary_names_are_ignored(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    for name in (".hidden.toml", "x.toml.part", "y.toml.tmp", "z.toml.crdownload", "~$w.toml", "._a.toml",
                 "Thumbs.db", ".DS_Store"):
        (inbox / name).write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
    scans(intake, clock, 5)
    assert entries(root / "staging") == [] and entries(root / "failed") == []


def test_acceptance_is_the_move_out_of_its_transaction_and_leaves_nothing_behind(root: Path,
                                                                                 media_dir: Path) -> None:
    intake, clock = make_intake(root)
    drop_job(root, "lesson01", media_dir / "a.wav", media_dir / "v.mp4")
    scans(intake, clock, 4)
    [job] = entries(root / "staging")
    moves = [e for e in history.read(root / "staging" / job) if e["event"] == "moved"]
    assert [(e["source"], e["to"], e["reason"]) for e in moves] == [("accepting", "staging", "accepted")]
    assert entries(Share(root).intake) == [] and entries(root / "inbox") == []


def test_job_folder_form_moves_the_whole_folder(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    folder = root / "inbox" / "lesson07"
    (folder / "media").mkdir(parents=True)
    shutil.copy(media_dir / "a.wav", folder / "media" / "speech.wav")
    shutil.copy(media_dir / "v.mp4", folder / "teacher.mp4")
    (folder / "notes.txt").write_text("script notes")
    (folder / "job.toml").write_text('audio = "media/speech.wav"\nvideo = "teacher.mp4"\noutput = "final"\n')
    scans(intake, clock, 4)
    [job] = entries(root / "staging")
    assert job.startswith("job-")
    inputs = root / "staging" / job / "inputs"
    assert sorted(p.relative_to(inputs).as_posix() for p in inputs.rglob("*") if p.is_file()) == [
        "job.toml", "media/speech.wav", "notes.txt", "teacher.mp4"]
    spec = staged_specs(root)[0]
    assert spec["audio"] == "inputs/media/speech.wav" and spec["output"] == "final.mp4"
    assert entries(root / "inbox") == []


def test_batch_becomes_one_job_per_pair_with_shared_batch_name(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / "script.wav")
    for name in ("anna.mp4", "bob.mp4", "chen.mp4"):
        shutil.copy(media_dir / "v.mp4", inbox / name)
    (inbox / "promo.toml").write_text('audio = "script.wav"\nvideos = ["anna.mp4", "bob.mp4", "chen.mp4"]\n')
    scans(intake, clock, 4)
    specs = staged_specs(root)
    assert len(specs) == 3
    assert {s["batch"] for s in specs} == {"promo"}
    assert sorted(str(s["video"]) for s in specs) == ["inputs/anna.mp4", "inputs/bob.mp4", "inputs/chen.mp4"]
    assert len({s["output"] for s in specs}) == 3
    for job in entries(root / "staging"):
        files = entries(root / "staging" / job / "inputs")
        assert "script.wav" in files and "promo.toml" in files and len(files) == 3
    assert entries(inbox) == []


def test_file_shared_by_two_loose_tickets_serves_both(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "v.mp4", inbox / "teacher.mp4")
    for n in ("l1", "l2"):
        shutil.copy(media_dir / "a.wav", inbox / f"{n}.wav")
        (inbox / f"{n}.toml").write_text(f'audio = "{n}.wav"\nvideo = "teacher.mp4"\n')
    scans(intake, clock, 8)  # linking for the first changes teacher.mp4's ctime: the second re-settles
    assert len(entries(root / "staging")) == 2
    for job in entries(root / "staging"):
        assert (root / "staging" / job / "inputs" / "teacher.mp4").stat().st_size > 0
    assert entries(inbox) == []  # the last user took it by rename: nothing left behind, nothing lost


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gb18030", "utf-16"])
def test_tickets_saved_by_windows_editors_are_read(root: Path, media_dir: Path, encoding: str) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / "讲稿.wav")
    shutil.copy(media_dir / "v.mp4", inbox / "老师.mp4")
    text = '# 第一课\naudio = "讲稿.wav"\nvideo = "老师.mp4"\n'
    (inbox / "第一课.toml").write_bytes(text.encode(encoding))
    scans(intake, clock, 4)
    assert entries(root / "failed") == []
    [job] = entries(root / "staging")
    assert job.startswith("第一课-")


def test_gbk_ticket_naming_missing_files_is_rejected_in_chinese(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root, LIPSYNCD_GENERAL_LANGUAGE="zh", LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN="0.5")
    (root / "inbox" / "课程.toml").write_bytes('audio = "讲稿.wav"\nvideo = "老师.mp4"\n'.encode("gbk"))
    scans(intake, clock, 12, every=5.0)
    [job] = entries(root / "failed")
    error = (root / "failed" / job / "error.txt").read_text()
    assert "讲稿.wav" in error and "没有到齐" in error
    assert "What went wrong" in error  # the English line follows for operators


@pytest.mark.parametrize("policy", ["fail", "process"])
def test_duplicate_policy(root: Path, media_dir: Path, policy: str) -> None:
    intake, clock = make_intake(root, LIPSYNCD_INTAKE_DUPLICATE_POLICY=policy)
    drop_job(root, "dup", media_dir / "a.wav", media_dir / "v.mp4")
    scans(intake, clock, 4)
    drop_job(root, "dup", media_dir / "a.wav", media_dir / "v.mp4")
    scans(intake, clock, 4)
    if policy == "fail":
        assert len(entries(root / "staging")) == 1
        [failed] = entries(root / "failed")
        error = (root / "failed" / failed / "error.txt").read_text()
        assert "identical to job" in error and entries(root / "staging")[0] in error
        assert sorted(entries(root / "failed" / failed / "inputs")) == ["dup.mp4", "dup.toml", "dup.wav"]
    else:
        assert len(entries(root / "staging")) == 2


def test_share_errors_pause_intake_and_never_look_like_missing_files(root: Path, media_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from daemon.intake import drop as drop_mod

    intake, clock = make_intake(root, LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN="0.1")
    (root / "inbox" / "t.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
    real = os.lstat

    def flaky(path: object, *a: object, **k: object) -> os.stat_result:
        if str(path).endswith((".wav", ".mp4")):
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return real(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(drop_mod.os, "lstat", flaky)
    scans(intake, clock, 10, every=5.0)  # well past the orphan timeout
    assert intake.paused and "Stale" in intake.paused
    assert entries(root / "failed") == [], "an unreachable share was read as 'files missing'"
    status = json.loads((root / ".lipsyncd" / "roles" / "intake.json").read_text())
    assert status["paused"] is True
    monkeypatch.setattr(drop_mod.os, "lstat", real)
    shutil.copy(media_dir / "a.wav", root / "inbox" / "a.wav")
    shutil.copy(media_dir / "v.mp4", root / "inbox" / "v.mp4")
    scans(intake, clock, 4)
    assert intake.paused is None and len(entries(root / "staging")) == 1
