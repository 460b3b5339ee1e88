"""A table of bad drops against a running intake process: each lands in failed/ with a plain reason,
its files untouched, and the intake keeps running and still accepts a good job afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from conftest import Roles, drop_job, entries, env_for, wait_for

Setup = Callable[[Path, Path, str], None]  # (inbox, media_dir, unique prefix)


def _names(p: str) -> dict[str, str]:
    return {"a": f"{p}a.wav", "v": f"{p}v.mp4", "t": f"{p}t.toml", "ghost": f"{p}ghost.mp4"}


def _ticket(text: str | bytes) -> Setup:
    """Loose media plus a ticket; {a} {v} {t} {ghost} in the text become this drop's file names."""
    def setup(inbox: Path, media: Path, p: str) -> None:
        n = _names(p)
        shutil.copy(media / "a.wav", inbox / n["a"])
        shutil.copy(media / "v.mp4", inbox / n["v"])
        raw = text if isinstance(text, bytes) else text.format(**n).encode()
        (inbox / n["t"]).write_bytes(raw)
    return setup


def _folder(links: dict[str, str], tickets: int) -> Setup:
    """A job folder with real media, optional symlinks (name -> target) and `tickets` tickets."""
    def setup(inbox: Path, media: Path, p: str) -> None:
        folder = inbox / f"{p}dir"
        folder.mkdir()
        shutil.copy(media / "a.wav", folder / "a.wav")
        if "v.mp4" in links:
            (folder / "v.mp4").symlink_to(links["v.mp4"])
        else:
            shutil.copy(media / "v.mp4", folder / "v.mp4")
        for k in range(tickets):
            (folder / f"{p}t{k}.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
    return setup


def _zero_byte(inbox: Path, media: Path, p: str) -> None:
    n = _names(p)
    shutil.copy(media / "a.wav", inbox / n["a"])
    (inbox / n["v"]).write_bytes(b"")
    (inbox / n["t"]).write_text(OK.format(**n))


def _loose_link(inbox: Path, media: Path, p: str) -> None:
    n = _names(p)
    shutil.copy(media / "a.wav", inbox / n["a"])
    (inbox / n["v"]).symlink_to(media / "v.mp4")
    (inbox / n["t"]).write_text(OK.format(**n))


def _big_file(inbox: Path, media: Path, p: str) -> None:
    n = _names(p)
    shutil.copy(media / "a.wav", inbox / n["a"])
    (inbox / n["v"]).write_bytes(os.urandom(2 * 1048576 + 10))
    (inbox / n["t"]).write_text(OK.format(**n))


OK = 'audio = "{a}"\nvideo = "{v}"\n'
BAD_DROPS: list[tuple[str, Setup, str]] = [
    ("syntax error", _ticket('audio = "{a}\nvideo = "{v}"\n'), "not valid TOML"),
    ("missing file", _ticket('audio = "{a}"\nvideo = "{ghost}"\n'), "never arrived"),
    ("traversal", _ticket('audio = "{a}"\nvideo = "../{v}"\n'), "points outside the job"),
    ("absolute path", _ticket('audio = "/etc/passwd"\nvideo = "{v}"\n'), "absolute path"),
    ("windows absolute path", _ticket('audio = "C:\\\\talk.wav"\nvideo = "{v}"\n'), "absolute path"),
    ("symlink escape in a job folder", _folder({"v.mp4": "/etc/hostname"}, 1), "is a link"),
    ("symlink loose in inbox", _loose_link, "is a link"),
    ("binary garbage", _ticket(b"\x00\x01\x02audio\x00"), "not readable text"),
    ("empty ticket", _ticket(""), "is empty"),
    ("only comments", _ticket("# nothing here\n"), "is empty"),
    ("wrong type", _ticket('audio = "{a}"\nvideo = 3\n'), "must be a file name"),
    ("unknown key", _ticket('audio = "{a}"\nvidoe = "{v}"\n'), "did you mean 'video'"),
    ("no video", _ticket('audio = "{a}"\n'), "no 'video' given"),
    ("zero-byte media", _zero_byte, "is empty (0 bytes)"),
    ("two tickets in a folder", _folder({}, 2), "holds 2 tickets"),
    ("engine not allowed", _ticket(OK + 'engine = "magic"\n'), "does not allow"),
    ("batch both ways", _ticket('audios = ["{a}"]\nvideos = ["{v}"]\naudio = "{a}"\n'), "not both"),
    ("sub-folder from a loose ticket", _ticket('audio = "sub/{a}"\nvideo = "{v}"\n'), "sub-folder"),
    ("oversized ticket", _ticket(OK + "#" + "x" * 5000 + "\n"), "at most 4096 bytes"),
    ("bad loop mode", _ticket(OK + 'loop = "bounce"\n'), "'loop' must be"),
    ("ticket names itself", _ticket('audio = "{a}"\nvideo = "{t}"\n'), "the ticket itself"),
    ("media over the size cap", _big_file, "the limit is 1.0 MB"),
    ("empty batch list", _ticket('audio = "{a}"\nvideos = []\n'), "a list of file names"),
]


def _digest(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(folder))] = "link->" + os.readlink(path)
        elif path.is_file():
            try:
                out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                continue  # intake renamed it (into -unclaimed/) between the listing and the read
    return out


def _kept(root: Path, job: Path, prefix: str, name: str, digest: str) -> bool:
    """The dropped file is in the job's inputs/, still in the inbox, or in failed/<name>-unclaimed/."""
    inner = name.split("/", 1)[1] if name.startswith(f"{prefix}dir/") else name
    unclaimed = _digest(root / "failed" / f"{name}-unclaimed" / "inputs").get(name)
    return digest in (_digest(job / "inputs").get(inner), _digest(root / "inbox").get(name), unclaimed)


def test_each_bad_drop_lands_in_failed_with_reason_and_intake_keeps_running(
        root: Path, media_dir: Path, roles: Roles, tmp_path: Path) -> None:
    env = env_for(root, LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN="0.03", LIPSYNCD_INTAKE_MAX_TICKET_BYTES="4096",
                  LIPSYNCD_INTAKE_MAX_FILE_MB="1")
    intake = roles.start("intake", env=env)
    wait_for(lambda: (root / "inbox").is_dir(), 20, "intake to create the share folders")
    dropped: dict[str, tuple[str, dict[str, str]]] = {}
    for i, (_label, setup, phrase) in enumerate(BAD_DROPS):
        prefix = f"b{i:02d}"
        prepared = tmp_path / prefix
        prepared.mkdir()
        setup(prepared, media_dir, prefix)
        dropped[prefix] = (phrase, _digest(prepared))
        # media and folders first, loose tickets last, each by rename (as a careful copy would)
        for item in sorted(prepared.iterdir(), key=lambda p: p.suffix == ".toml"):
            item.rename(root / "inbox" / item.name)

    def landed() -> dict[str, list[Path]]:
        out: dict[str, list[Path]] = {}
        for job in (root / "failed").iterdir():
            if not job.name.endswith("-unclaimed"):  # media a rejected ticket left behind (checked below)
                out.setdefault(job.name[:3], []).append(job)
        return out

    wait_for(lambda: set(landed()) >= set(dropped), 90, "every bad drop to land in failed/")
    assert intake.poll() is None, roles.log_of(intake)
    jobs = landed()
    for prefix, (phrase, before) in dropped.items():
        assert len(jobs[prefix]) == 1, f"{prefix} landed as {jobs[prefix]}"
        job = jobs[prefix][0]
        error = (job / "error.txt").read_text()
        assert phrase in error, f"{prefix}: {phrase!r} not in {error!r}"
        assert "What to do" in error
        report = json.loads((job / "report.json").read_text())
        assert report["state"] == "failed" and report["code"] and report["message"]
        # nothing lost or changed: every dropped file is in the job's inputs/ or, when the ticket could
        # not be understood (so it names nothing we can trust), still in the inbox for a corrected
        # ticket to use, or (after orphan_timeout_min) in failed/<name>-unclaimed/: byte-identical
        for name, digest in before.items():  # a file may be between inbox/ and -unclaimed/ right now
            wait_for(lambda n=name, d=digest, p=prefix, j=job: _kept(root, j, p, n, d), 20,
                     f"{prefix}: {name} kept byte-identical")
    assert [name for name in entries(root / "inbox") if name.endswith(".toml") or "dir" in name] == []
    drop_job(root, "good", media_dir / "a.wav", media_dir / "v.mp4")
    wait_for(lambda: len(entries(root / "staging")) == 1, 30, "a good job to be accepted after the bad ones")
    assert intake.poll() is None
