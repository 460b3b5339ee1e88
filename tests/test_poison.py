"""Folders in staging/ that are not jobs (no job.json, a broken one) go to failed/ with a reason an
operator understands, untouched, exactly once; the worker stays up and real jobs keep flowing."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from conftest import Roles, drop_job, entries, env_for, wait_for

GRACE_S = 2.0  # worker.lease_s: how long a non-job must be quiet before it is quarantined


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def _poison(root: Path, name: str, spec: bytes | None) -> dict[str, str]:
    folder = root / "staging" / name
    (folder / "inputs").mkdir(parents=True)
    (folder / "inputs" / "lesson.wav").write_bytes(os.urandom(3000))
    (folder / "notes.txt").write_text("copied by hand\n")
    if spec is not None:
        (folder / "job.json").write_bytes(spec)
    return _digests(folder)


def test_non_jobs_in_staging_are_quarantined_with_a_reason_and_jobs_flow(root: Path, media_dir: Path,
                                                                        roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_WORKER_LEASE_S=str(GRACE_S))
    roles.start("intake", env=env)
    wait_for(lambda: (root / "staging").is_dir(), 20, "share folders")
    before = {"handcopy": _poison(root, "handcopy", None), "broken": _poison(root, "broken", b'{"id": "bro'),
              "listy": _poison(root, "listy", b"[1, 2]"), "partial": _poison(root, "partial", b'{"id": "partial"}')}
    drop_job(root, "fine", media_dir / "a.wav", media_dir / "v.mp4")
    workers = [roles.start("worker", "--name", f"w{n}", env=env) for n in range(2)]
    wait_for(lambda: len(entries(root / "failed")) == 4 and len(entries(root / "done")) == 1, 120,
             "four non-jobs in failed/ and the real job in done/")
    assert [w.poll() for w in workers] == [None, None], "a non-job killed a worker"
    for name, digests in before.items():
        folder = root / "failed" / name
        after = _digests(folder)
        assert {k: after[k] for k in digests} == digests, f"{name}: its files changed"
        text = (folder / "error.txt").read_text()
        assert f"The folder {name} was found in staging/ but is not a job" in text
        assert "Nothing in it was changed" in text
        report = json.loads((folder / "report.json").read_text())
        assert report["code"] == "not_a_job" and report["state"] == "failed"
        claims = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines()]
        assert len([c for c in claims if c.get("to") == "processing"]) == 1, f"{name} claimed more than once"
    reasons = {n: json.loads((root / "failed" / n / "report.json").read_text())["params"]["problem"]
               for n in before}
    assert reasons["handcopy"] == "it has no job.json"
    assert reasons["broken"].startswith("its job.json is not a valid job description")
    assert "not an object" in reasons["listy"] and "lacks required fields" in reasons["partial"]
    assert entries(root / "staging") == [] and entries(root / "processing") == []


def test_a_folder_still_being_copied_is_left_alone_until_quiet(root: Path, media_dir: Path, roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_WORKER_LEASE_S="6")
    worker = roles.start("worker", env=env)
    wait_for(lambda: (root / "staging").is_dir(), 20, "share folders")
    folder = root / "staging" / "arriving"
    folder.mkdir()
    for i in range(8):  # a slow copy: a new file every second for 8 s (> the 6 s grace in all)
        (folder / f"part{i}.bin").write_bytes(os.urandom(1000))
        time.sleep(1.0)  # the copy's pace, not a wait on the worker
        assert folder.is_dir(), f"taken away while still being copied (after {i + 1} s)"
    wait_for(lambda: (root / "failed" / "arriving").is_dir(), 60, "the quiet non-job in failed/")
    assert sorted(p.name for p in (root / "failed" / "arriving").iterdir() if p.name.startswith("part")) == \
        [f"part{i}.bin" for i in range(8)]
    assert worker.poll() is None
