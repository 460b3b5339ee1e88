"""Names as producers' machines write them, the inbox as the only inbox, and inbox hygiene (issue 12
items 6, 8, 9): NFD/NFC matching, control characters escaped, Windows device names adjusted, a state
folder swapped for a link refused at every scan, unclaimed media moved aside with a reason."""

from __future__ import annotations

import hashlib
import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from conftest import entries
from test_intake import make_intake, scans

from daemon.core import ticket as tickets
from daemon.core.errors import JobRejected


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_a_macos_nfd_file_name_matches_an_nfc_ticket(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / _nfd("café.wav"))  # as a Mac writes it
    shutil.copy(media_dir / "v.mp4", inbox / "v.mp4")
    (inbox / "résumé.toml").write_text('audio = "café.wav"\nvideo = "v.mp4"\n')  # as an editor writes it
    scans(intake, clock, 4)
    assert entries(root / "failed") == []
    [job] = entries(root / "staging")
    spec = json.loads((root / "staging" / job / "job.json").read_text())
    assert spec["audio"] == "inputs/" + _nfd("café.wav")
    assert any("different Unicode form" in note for note in spec["notes"])
    assert spec["output"] == "résumé.mp4"  # NFC, accents kept


def test_two_files_differing_only_by_normalisation_are_ambiguous(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "a.wav", inbox / "no\u00ebl.wav")  # NFC, from Windows
    shutil.copy(media_dir / "short.wav", inbox / "noe\u0308l.wav")  # NFD, the same name from a Mac
    shutil.copy(media_dir / "v.mp4", inbox / "v.mp4")
    (inbox / "t.toml").write_text('audio = "no\u00ebl.wav"\nvideo = "v.mp4"\n')
    scans(intake, clock, 4)
    assert entries(root / "staging") == []
    [job] = entries(root / "failed")
    error = (root / "failed" / job / "error.txt").read_text()
    assert "different Unicode forms" in error and "Delete the extra copies" in error


def test_control_characters_get_their_own_reason_and_are_escaped(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    shutil.copy(media_dir / "v.mp4", inbox / "v.mp4")
    (inbox / "bell.toml").write_text('audio = "a\\u0007b.wav"\nvideo = "v.mp4"\n')
    scans(intake, clock, 4)
    [job] = entries(root / "failed")
    error = (root / "failed" / job / "error.txt").read_text()
    report = (root / "failed" / job / "report.json").read_text()
    assert "invisible control character" in error and "a\\x07b.wav" in error and "\x07" not in error
    assert "\\u0007" not in report or "a\\\\x07b.wav" in report
    assert "\x07" not in json.loads(report)["message"]


def test_a_file_name_that_is_not_utf8_is_shown_escaped(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    raw = bytes(inbox) + b"/caf\xe9.toml"  # Latin-1 bytes from an old client
    with open(raw, "w") as fh:
        fh.write('audio = "missing.wav"\nvideo = ""\n')
    scans(intake, clock, 4)
    [job] = entries(root / "failed")
    error = (root / "failed" / job / "error.txt").read_text(encoding="utf-8")
    assert "caf\\xe9.toml" in error


@pytest.mark.parametrize("output,written", [("CON", "CON_.mp4"), ("nul.mp4", "nul_.mp4"), ("lpt1", "lpt1_.mp4"),
                                            ("final. ", "final.mp4"), ("ok", "ok.mp4")])
def test_windows_device_names_and_trailing_dots_are_adjusted_and_reported(output: str, written: str) -> None:
    text = f'audio = "a.wav"\nvideo = "v.mp4"\noutput = "{output}"\n'
    parsed = tickets.parse(text.encode(), "t.toml", allowed_engines=("warp",), max_files=64, nested=False)
    assert parsed.pairs[0].output == written
    assert bool(parsed.notes) == (written != f"{output}.mp4".replace(".mp4.mp4", ".mp4"))


def test_ticket_stem_that_is_a_device_name_gets_a_windows_safe_output() -> None:
    parsed = tickets.parse(b'audio = "a.wav"\nvideo = "v.mp4"\n', "aux.toml", allowed_engines=("warp",),
                           max_files=64, nested=False)
    assert parsed.pairs[0].output == "aux_.mp4" and "Windows" in parsed.notes[0]


def test_batch_limit_counts_what_the_producer_named() -> None:
    videos = ", ".join(f'"p{i}.mp4"' for i in range(4))
    text = f'audio = "s.wav"\nvideos = [{videos}]\n'.encode()  # 5 names
    tickets.parse(text, "b.toml", allowed_engines=("warp",), max_files=5, nested=False)
    with pytest.raises(JobRejected) as caught:
        tickets.parse(text, "b.toml", allowed_engines=("warp",), max_files=4, nested=False)
    assert caught.value.params["count"] == 5 and caught.value.params["limit"] == 4
    repeated = b'audio = "s.wav"\nvideos = ["p.mp4", "p.mp4", "p.mp4", "p.mp4"]\n'  # repeats count too
    with pytest.raises(JobRejected):
        tickets.parse(repeated, "b.toml", allowed_engines=("warp",), max_files=4, nested=False)


def test_inbox_replaced_by_a_symlink_at_run_time_is_refused_and_nothing_outside_is_touched(
        root: Path, media_dir: Path, tmp_path: Path) -> None:
    intake, clock = make_intake(root)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(media_dir / "a.wav", outside / "a.wav")
    shutil.copy(media_dir / "v.mp4", outside / "v.mp4")
    (outside / "t.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in outside.iterdir()}
    scans(intake, clock, 2)  # a healthy start
    (root / "inbox").rmdir()
    (root / "inbox").symlink_to(outside)
    scans(intake, clock, 6)
    assert intake.paused is not None and "symbolic link" in intake.paused
    status = json.loads((root / ".lipsyncd" / "roles" / "intake.json").read_text())
    assert status["paused"] and "symbolic link" in status["refusing"]
    assert entries(root / "staging") == [] and entries(root / "failed") == []
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in outside.iterdir()} == before
    (root / "inbox").unlink()
    (root / "inbox").mkdir()
    scans(intake, clock, 2)
    assert intake.paused is None


def test_media_no_ticket_names_move_to_unclaimed_with_a_reason_and_nothing_is_deleted(
        root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root, LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN="1")
    inbox = root / "inbox"
    shutil.copy(media_dir / "v.mp4", inbox / "typo.mp4")
    shutil.copy(media_dir / "a.wav", inbox / "used.wav")
    shutil.copy(media_dir / "v.mp4", inbox / "used.mp4")
    (inbox / "keep.toml").write_text('audio = "used.wav"\nvideo = "used.mp4"\nvideo2 = 1\n')  # rejected
    (inbox / ".~lock.part").write_text("a copy tool's temporary file")
    scans(intake, clock, 10, every=5.0)  # 50 s: within the timeout
    assert "typo.mp4" in entries(inbox)
    scans(intake, clock, 6, every=5.0)
    failed = entries(root / "failed")
    assert "typo.mp4-unclaimed" in failed and "used.wav-unclaimed" in failed
    error = (root / "failed" / "typo.mp4-unclaimed" / "error.txt").read_text()
    assert "No job ticket named the file typo.mp4 for 1 minutes" in error
    assert "move failed/typo.mp4-unclaimed/inputs/typo.mp4 back into inbox/" in error
    moved = root / "failed" / "typo.mp4-unclaimed" / "inputs" / "typo.mp4"
    assert moved.read_bytes() == (media_dir / "v.mp4").read_bytes()
    assert entries(inbox) == [] and (inbox / ".~lock.part").exists()  # temporary names stay
    # the way back, as error.txt says: move it into inbox/ and drop a ticket naming it
    shutil.copy(media_dir / "a.wav", inbox / "typo.wav")
    moved.rename(inbox / "typo.mp4")
    (inbox / "typo.toml").write_text('audio = "typo.wav"\nvideo = "typo.mp4"\n')
    scans(intake, clock, 4)
    assert len(entries(root / "staging")) == 1


def test_the_watchdog_alerts_when_intake_refuses_a_linked_state_folder(tmp_path: Path) -> None:
    from chat_server import ChatServer
    from test_sentinel_patrol import FakeClock, FakeManager, deliver, make_config, patrol_for, webhook

    from daemon.core import atomic
    from daemon.sentinel.lane import Lane

    root = tmp_path / "share"
    server, lane = ChatServer(ding_keyword="lipsyncd").start(), Lane()
    try:
        config = make_config(root, webhook(server))
        clock = FakeClock()
        status = root / ".lipsyncd" / "roles" / "intake.json"
        status.parent.mkdir(parents=True)
        atomic.write_json(status, {"host": "h1", "pid": 7, "paused": True, "pause_reason": "layout: x",
                                   "refusing": "layout: /srv/inbox was replaced by a symbolic link"})
        patrol = patrol_for(config, FakeManager(), lane, clock)
        patrol.step()
        deliver(patrol, clock)
        assert any("Intake refuses the share" in t and "symbolic link" in t for t in server.texts())
    finally:
        lane.close()
        server.down()
