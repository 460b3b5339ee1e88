"""The fault runner's audit is not vacuous: on a hand-built share with one finished job it passes, and each
kind of damage (a lost or altered input, a second result, a second completion, a completion by a process
that did not hold the claim, a truncated result, a job in two folders, an unfinished job) is caught."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from chat_server import ChatServer
from conftest import ffmpeg
from faults.audit import Audit
from faults.producer import Dropped
from faults.runner import DURATIONS

JOB = "g00001-20260101-000000.000-abcdef"


def _share(root: Path, media: Path) -> Dropped:
    folder = root / "done" / JOB
    (folder / "inputs").mkdir(parents=True)
    for state in ("inbox", "staging", "processing", "failed"):
        (root / state).mkdir()
    drop = Dropped("g00001", "good", dropped_at=1.0)
    for name, src in (("g00001.wav", "short.wav"), ("g00001.mp4", "v.mp4")):
        shutil.copy(media / src, folder / "inputs" / name)
        drop.files[name] = hashlib.sha256((media / src).read_bytes()).hexdigest()
    ffmpeg("-stream_loop", "-1", "-i", str(media / "v.mp4"), "-i", str(media / "short.wav"), "-map", "0:v",
           "-map", "1:a", "-t", "0.6", "-c:v", "libx264", "-c:a", "aac", str(folder / "g00001.mp4"))
    (folder / "job.json").write_text(json.dumps({"id": JOB, "audio": "inputs/g00001.wav",
                                                 "video": "inputs/g00001.mp4", "output": "g00001.mp4"}))
    (folder / "report.json").write_text(json.dumps({"state": "done", "code": "ok", "timings": {"finished_at": 2}}))
    events = [{"event": "moved", "to": "staging", "pid": 10}, {"event": "moved", "to": "processing", "pid": 20},
              {"event": "moved", "to": "done", "pid": 20}]
    (folder / "history.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return drop


def _audit(root: Path, drop: Dropped) -> dict[str, object]:
    return Audit(root, [drop], [], ChatServer(), "", [], DURATIONS).run()


def _append_event(folder: Path, **event: object) -> None:
    with open(folder / "history.jsonl", "a") as fh:
        fh.write(json.dumps(event) + "\n")


DAMAGE: dict[str, tuple[Callable[[Path], object], str]] = {
    "input deleted": (lambda f: (f / "inputs" / "g00001.wav").unlink(), "inputs lost"),
    "input altered": (lambda f: (f / "inputs" / "g00001.mp4").write_bytes(b"x"), "inputs lost"),
    "second result": (lambda f: shutil.copy(f / "g00001.mp4", f / "g00001 (1).mp4"), "duplicate results"),
    "done twice": (lambda f: _append_event(f, event="moved", to="done", pid=20), "duplicate results"),
    "done by a non-owner": (lambda f: _append_event(f, event="moved", to="processing", pid=30),
                            "duplicate results"),
    "truncated result": (lambda f: (f / "g00001.mp4").write_bytes((f / "g00001.mp4").read_bytes()[:3000]),
                         "partial files"),
    "in two folders": (lambda f: shutil.copytree(f, f.parents[1] / "failed" / f.name), "duplicate results"),
    "unfinished": (lambda f: f.rename(f.parents[1] / "staging" / f.name), "not in exactly one terminal"),
}


def test_audit_of_an_intact_share_passes(tmp_path: Path, media_dir: Path) -> None:
    figures = _audit(tmp_path, _share(tmp_path, media_dir))
    assert figures["failures"] == []
    assert figures["outcomes"] == {"done": 1, "failed_reasons": {}, "unfinished": 0}
    assert figures["inputs_lost"] == 0 and figures["partial_under_final_names"] == 0


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_audit_catches_damage(tmp_path: Path, media_dir: Path, damage: str) -> None:
    drop = _share(tmp_path, media_dir)
    harm, expected = DAMAGE[damage]
    harm(tmp_path / "done" / JOB)
    failures = _audit(tmp_path, drop)["failures"]
    assert any(expected in f for f in failures), failures  # type: ignore[attr-defined]
