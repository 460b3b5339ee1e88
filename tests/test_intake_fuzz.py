"""No drop can stop intake for everyone: seeded fuzzing of ticket bytes and of the file types a ticket
names (FIFOs, sockets, devices, folders, link loops). Every drop ends in failed/ with a reason within
the settle window, no scan blocks, and a good job is still accepted afterwards."""

from __future__ import annotations

import os
import random
import shutil
import socket
import stat
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import drop_job, entries
from test_intake import make_intake, scans

from daemon.core import messages
from daemon.core import ticket as tickets
from daemon.core.errors import JobRejected
from daemon.intake.role import Intake

SEED = int(os.environ.get("LIPSYNCD_FUZZ_SEED", "12"))
VALID = [b'audio = "a.wav"\nvideo = "v.mp4"\n',
         b'audio = "s.wav"\nvideos = ["p1.mp4", "p2.mp4"]\noutput = "promo"\npriority = 3\n',
         b'video = "t.mp4"\naudios = ["x.wav", "y.wav"]\nengine = "warp"\n[options]\nstrength = 1.2\n']
TOKENS = [b"[", b"]", b"{", b"}", b"=", b'"', b"'''", b'"""', b"\n", b",", b".", b"\\u0000", b"\\", b"\x00",
          b"\xff\xfe", b"\xef\xbb\xbf", b"1" * 5000, b"1e999999", b"nan", b"-inf", b"0x" + b"f" * 4400,
          b"[" * 3000, b"{a=" * 2000, b"a." * 3000 + b"b=1\n", b"\x07", b"\x1b[31m", "é".encode(),
          "\u202e".encode(), b"\xed\xa0\x80", b"audio", b"videos", b"[[x]]\n", b"[options]\n",
          b"1979-05-27T07:32:00Z", b"true", b'"CON"', b'"a\\u0007b.wav"']


def _mutate(rng: random.Random) -> bytes:
    data = bytearray(rng.choice(VALID))
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        pos = rng.randint(0, len(data))
        if op < 0.4:
            data[pos:pos] = rng.choice(TOKENS)
        elif op < 0.6 and data:
            del data[pos:pos + rng.randint(1, 20)]
        elif op < 0.8 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        else:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    if rng.random() < 0.1:
        data = bytearray(bytes(data).decode("latin-1").encode("utf-16"))
    return bytes(data)


def _visible(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in text.replace("\n", ""))


def test_fuzzed_ticket_bytes_parse_or_reject_with_a_readable_reason() -> None:
    rng = random.Random(SEED)
    outcomes = {"accepted": 0, "rejected": 0}
    for i in range(3000):
        raw = _mutate(rng)
        try:
            parsed = tickets.parse(raw, f"fuzz{i}.toml", allowed_engines=("warp", "copy"), max_files=64,
                                   nested=bool(i % 2))
        except JobRejected as exc:
            outcomes["rejected"] += 1
            for language in messages.LANGUAGES:
                msg = messages.render(exc.code, language, exc.params)
                assert messages.known(exc.code) and _visible(msg.what) and _visible(msg.todo), (raw, msg)
            continue
        outcomes["accepted"] += 1
        for name in parsed.files:
            assert _visible(name) and ".." not in Path(name).parts and not name.startswith("/")
        for pair in parsed.pairs:
            assert tickets.safe_stem(pair.output[:-4]) == pair.output[:-4]
    assert outcomes["accepted"] > 20 and outcomes["rejected"] > 1000, outcomes  # the fuzzer reaches both


@pytest.mark.parametrize("text", [
    "a = " + "[" * 100_000 + "]" * 100_000,
    "batch." * 5000 + "x = 1\n",
    'audio = "a.wav"\nvideo = "v.mp4"\npriority = 1' + "0" * 5000 + "\n",
    'audio = "a.wav"\nvideo = "v.mp4"\nbatch = ' + "[" * 40 + "]" * 40 + "\n",
])
def test_deep_or_huge_tickets_are_rejected_not_raised(text: str) -> None:
    with pytest.raises(JobRejected) as caught:
        tickets.parse(text.encode(), "deep.toml", allowed_engines=("warp",), max_files=64, nested=False)
    assert caught.value.code in ("ticket_too_complex", "ticket_bad_value", "ticket_unknown_key")


def _step_within(intake: Intake, seconds: float) -> None:
    """One scan in a thread: it must return (a FIFO opened for reading would block it forever)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            intake.step()
        except BaseException as exc:  # reported in the test thread below
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "an intake scan blocked"
    if failure:
        raise failure[0]


Maker = Callable[[Path], None]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


def _device(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "inner.bin").write_bytes(b"x" * 100)


def _loop(path: Path) -> None:
    path.symlink_to(path.name)


KINDS: dict[str, Maker] = {"fifo": _fifo, "socket": _socket, "folder": _folder, "loop": _loop}
if os.geteuid() == 0:
    KINDS["device"] = _device


def test_special_files_named_by_tickets_or_posing_as_tickets_fail_and_never_block(
        root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root)
    inbox = root / "inbox"
    rng = random.Random(SEED)
    expected = set()
    for kind, make in KINDS.items():
        shutil.copy(media_dir / "a.wav", inbox / f"{kind}.wav")
        make(inbox / f"{kind}.mp4")  # a ticket names the special file as its video
        (inbox / f"{kind}.toml").write_text(f'audio = "{kind}.wav"\nvideo = "{kind}.mp4"\n')
        make(inbox / f"{kind}-as-ticket.toml")  # the "ticket" itself is the special file
        # (a folder named *.toml is a folder: a job folder once a ticket is in it)
        expected |= {kind} | ({f"{kind}-as-ticket"} if kind != "folder" else set())
        folder = inbox / f"{kind}-folder"
        folder.mkdir()
        shutil.copy(media_dir / "a.wav", folder / "a.wav")
        make(folder / "v.mp4")  # the folder form: the whole folder is the job
        (folder / "job.toml").write_text('audio = "a.wav"\nvideo = "v.mp4"\n')
        expected.add("job")
    for i in range(20):  # and fuzzed tickets naming real media, next to them
        stem = f"fz{i:02d}"
        shutil.copy(media_dir / "a.wav", inbox / f"{stem}a.wav")
        (inbox / f"{stem}.toml").write_bytes(_mutate(rng).replace(b"a.wav", f"{stem}a.wav".encode()))
    for _ in range(4):  # well within settle_s (5) plus one scan
        _step_within(intake, 30)
        clock.t += 3.0
    failed = entries(root / "failed")
    for stem in expected - {"job"}:
        assert any(j.startswith(f"{stem}-") for j in failed), f"{stem} not in failed/: {failed}"
    assert sum(j.startswith("job-") for j in failed) == len(KINDS)
    for job in failed:
        error = (root / "failed" / job / "error.txt").read_text()
        assert "What to do" in error and _visible(error.replace("\n", "")), error
    fuzz_left = [n for n in entries(inbox) if n.startswith("fz") and n.endswith(".toml")]
    assert fuzz_left == [], f"fuzzed tickets neither accepted nor rejected: {fuzz_left}"
    drop_job(root, "good", media_dir / "a.wav", media_dir / "v.mp4")
    for _ in range(4):
        _step_within(intake, 30)
        clock.t += 3.0
    assert any(j.startswith("good-") for j in entries(root / "staging"))


def test_ticket_larger_than_the_limit_is_read_bounded_and_rejected(root: Path, media_dir: Path) -> None:
    intake, clock = make_intake(root, LIPSYNCD_INTAKE_MAX_TICKET_BYTES="1024")
    (root / "inbox" / "huge.toml").write_bytes(b"# " + b"x" * 50_000_000 + b"\n")
    scans(intake, clock, 4)
    [job] = entries(root / "failed")
    assert "at most 1024 bytes" in (root / "failed" / job / "error.txt").read_text()
