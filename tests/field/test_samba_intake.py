"""Real producers (issue 12 item 10): a Samba server on loopback serves the share, producers copy with
`smbclient` and through a FUSE SMB mount (smbnetfs), and a real intake process on the same box decides.

Asserted for every drop: nothing half-written is accepted, no accepted input changes afterwards, every
drop ends in staging/ (accepted) or failed/ with a reason, nothing is lost. Needs root, samba,
smbclient, smbnetfs, rsync and the field-lab scripts (../shared/field-lab, or LIPSYNCD_FIELD_LAB);
skips with the reason when one is missing. Writes its LAB folders under the test's tmp dir.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, Roles, env_for, ffmpeg, wait_for

pytestmark = pytest.mark.slow


def _field_lab() -> Path | None:
    for candidate in (os.environ.get("LIPSYNCD_FIELD_LAB"), REPO.parent / "shared" / "field-lab",
                      Path("/work/shared/field-lab")):
        if candidate and (Path(candidate) / "samba-up.sh").is_file():
            return Path(candidate)
    return None


LAB_SCRIPTS = _field_lab()
MISSING = [tool for tool in ("smbd", "smbclient", "smbpasswd", "smbnetfs", "rsync", "fusermount")
           if shutil.which(tool) is None]
if LAB_SCRIPTS is None:
    pytest.skip("field-lab scripts not found (../shared/field-lab or LIPSYNCD_FIELD_LAB)", allow_module_level=True)
if MISSING:
    pytest.skip(f"not installed: {', '.join(MISSING)} (scripts/bootstrap.sh --test installs them)",
                allow_module_level=True)
if os.geteuid() != 0:
    pytest.skip("samba-up.sh needs root (it adds a local user and binds port 445)", allow_module_level=True)


@dataclass
class Lab:
    root: Path  # the share, as intake sees it
    lab: Path
    mount: Path  # MNT/127.0.0.1/share: the share through smbnetfs
    media: Path
    roles: Roles

    def smb(self, *commands: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.smb_argv(*commands), capture_output=True, text=True, timeout=timeout, check=True)

    def smb_argv(self, *commands: str) -> list[str]:
        return ["smbclient", "-s", str(self.lab / "smb.conf"), "//127.0.0.1/share", "-U", "producer%producer-pw",
                "-m", "SMB3", "-c", "; ".join(commands)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_media(folder: Path) -> Path:
    folder.mkdir()
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=2", "-ar", "16000", str(folder / "a.wav"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-t", "2", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", str(folder / "v.mp4"))
    # big enough that a stall half-way shows a half-size file on the server (moov at the end, as usual)
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "6", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(folder / "big.mp4"))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25", "-t", "2", "-pix_fmt", "yuv420p",
           "-c:v", "libx264", "-preset", "ultrafast", str(folder / "other.mp4"))
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("samba")
    root, labdir, mnt = base / "share", base / "lab", base / "mnt"
    (root / "inbox").mkdir(parents=True)
    assert LAB_SCRIPTS is not None
    subprocess.run(["bash", str(LAB_SCRIPTS / "samba-up.sh"), str(root), str(labdir)], check=True,
                   capture_output=True, timeout=120)
    logs = base / "logs"
    logs.mkdir()
    roles = Roles(logs)
    mounted = False
    try:
        subprocess.run(["bash", str(LAB_SCRIPTS / "smb-mount-up.sh"), str(mnt), str(labdir)], check=True,
                       capture_output=True, timeout=120)
        mounted = True
        env = env_for(root, LIPSYNCD_INTAKE_SETTLE_S="1.0", LIPSYNCD_INTAKE_SCAN_INTERVAL_S="0.3",
                      LIPSYNCD_INTAKE_LOCAL_EVENTS="true", LIPSYNCD_INTAKE_INCOMPLETE_GRACE_S="8",
                      LIPSYNCD_INTAKE_ORPHAN_TIMEOUT_MIN="30")
        roles.start("intake", env=env)
        wait_for(lambda: (root / ".lipsyncd" / "roles" / "intake.json").is_file(), 60, "intake to start")
        yield Lab(root, labdir, mnt / "127.0.0.1" / "share", _make_media(base / "media"), roles)
        assert all(p.poll() is None for p in roles.procs), "intake died during the Samba tests"
    finally:
        roles.stop_all()
        if mounted:
            subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True, timeout=60)
        pid = int((labdir / "smbd.pid").read_text())
        os.kill(pid, signal.SIGTERM)


def _accepted(root: Path, stem: str) -> list[Path]:
    return sorted(p for p in (root / "staging").iterdir() if p.name.startswith(f"{stem}-"))


def _failed(root: Path, stem: str) -> list[Path]:
    return sorted(p for p in (root / "failed").iterdir() if p.name.startswith(f"{stem}-"))


def _ticket(lab: Lab, stem: str, audio: str, video: str) -> Path:
    path = lab.root.parent / f"{stem}.toml"
    path.write_text(f'audio = "{audio}"\nvideo = "{video}"\n')
    return path


def _one_accepted(lab: Lab, stem: str, expect: dict[str, str], timeout: float = 90) -> Path:
    wait_for(lambda: _accepted(lab.root, stem) or _failed(lab.root, stem), timeout, f"{stem} to be decided")
    assert _failed(lab.root, stem) == [], (_failed(lab.root, stem)[0] / "error.txt").read_text()
    [job] = _accepted(lab.root, stem)
    for name, digest in expect.items():
        assert _sha(job / "inputs" / name) == digest, f"{stem}: {name} differs from what the producer sent"
    return job


def test_smbclient_media_first_and_ticket_first_are_accepted_whole(lab: Lab) -> None:
    m = lab.media
    lab.smb("cd inbox", f"put {m / 'a.wav'} mf.wav", f"put {m / 'v.mp4'} mf.mp4",
            f"put {_ticket(lab, 'mf', 'mf.wav', 'mf.mp4')} mf.toml")
    lab.smb("cd inbox", f"put {_ticket(lab, 'tf', 'tf.wav', 'tf.mp4')} tf.toml")
    time.sleep(2)  # the ticket waits alone for a while, as when a producer copies it first
    lab.smb("cd inbox", f"put {m / 'a.wav'} tf.wav", f"put {m / 'v.mp4'} tf.mp4")
    for stem in ("mf", "tf"):
        _one_accepted(lab, stem, {f"{stem}.wav": _sha(m / "a.wav"), f"{stem}.mp4": _sha(m / "v.mp4")})


def _watch_nothing_decided(lab: Lab, stem: str, until: threading.Event, seen: list[str]) -> None:
    while not until.is_set():
        for job in _accepted(lab.root, stem) + _failed(lab.root, stem):
            seen.append(job.name)
        until.wait(0.1)


def test_a_copy_that_stalls_with_the_handle_open_is_not_accepted_half_written(lab: Lab) -> None:
    m = lab.media
    lab.smb("cd inbox", f"put {m / 'a.wav'} stall.wav", f"put {_ticket(lab, 'stall', 'stall.wav', 'stall.mp4')} "
            "stall.toml")
    done, early = threading.Event(), []
    watcher = threading.Thread(target=_watch_nothing_decided, args=(lab, "stall", done, early))
    watcher.start()
    assert LAB_SCRIPTS is not None
    # through the FUSE SMB mount: 2 MB/s, a 10 s stall half-way (ten times settle_s) with the file open
    writer = subprocess.run([sys.executable, str(LAB_SCRIPTS / "slow-writer.py"), str(m / "big.mp4"),
                             str(lab.mount / "inbox" / "stall.mp4"), "2", "--stall", "0.5:10"],
                            capture_output=True, text=True, timeout=120)
    done.set()
    watcher.join()
    assert writer.returncode == 0 and "stall 10" in writer.stdout, writer.stdout + writer.stderr
    assert early == [], f"decided while the copy was still running: {early}"
    _one_accepted(lab, "stall", {"stall.mp4": _sha(m / "big.mp4")})


def test_a_killed_copy_waits_then_fails_as_incomplete_with_its_files(lab: Lab) -> None:
    m = lab.media
    assert LAB_SCRIPTS is not None
    fifo = lab.root.parent / "killed.fifo"
    os.mkfifo(fifo)
    lab.smb("cd inbox", f"put {m / 'a.wav'} killed.wav")
    feeder = subprocess.Popen([sys.executable, str(LAB_SCRIPTS / "slow-writer.py"), str(m / "big.mp4"), str(fifo),
                               "8", "--stop", "0.5"], stdout=subprocess.PIPE, text=True)
    lab.smb("cd inbox", f"put {fifo} killed.mp4")  # smbclient sends what it got, then closes the file
    assert feeder.wait(timeout=60) == 3
    sent = (lab.root / "inbox" / "killed.mp4").stat().st_size
    assert 0 < sent < (m / "big.mp4").stat().st_size
    lab.smb("cd inbox", f"put {_ticket(lab, 'killed', 'killed.wav', 'killed.mp4')} killed.toml")
    time.sleep(4)  # within the grace period: still "arriving", listed as waiting
    assert _accepted(lab.root, "killed") == [] and _failed(lab.root, "killed") == []
    status = (lab.root / ".lipsyncd" / "roles" / "intake.json").read_text()
    assert "killed.toml" in status and "incomplete" in status
    wait_for(lambda: _failed(lab.root, "killed"), 60, "the cut-off copy to fail as incomplete")
    [job] = _failed(lab.root, "killed")
    error = (job / "error.txt").read_text()
    assert "killed.mp4 looks cut off" in error and "Copy killed.mp4 into the inbox again" in error
    assert (job / "inputs" / "killed.mp4").stat().st_size == sent  # kept as it arrived, nothing lost


def test_an_in_place_recopy_over_smb_changes_no_accepted_job(lab: Lab) -> None:
    m = lab.media
    lab.smb("cd inbox", f"put {m / 'v.mp4'} shared.mp4", f"put {m / 'a.wav'} r1.wav",
            f"put {_ticket(lab, 'r2', 'r2.wav', 'shared.mp4')} r2.toml",
            f"put {_ticket(lab, 'r1', 'r1.wav', 'shared.mp4')} r1.toml")
    first = _one_accepted(lab, "r1", {"shared.mp4": _sha(m / "v.mp4")})
    inode = (lab.root / "inbox" / "shared.mp4").stat().st_ino
    lab.smb("cd inbox", f"put {m / 'other.mp4'} shared.mp4")  # overwrite in place: Samba keeps the inode
    assert (lab.root / "inbox" / "shared.mp4").stat().st_ino == inode
    time.sleep(2)
    assert _sha(first / "inputs" / "shared.mp4") == _sha(m / "v.mp4"), "the re-copy reached an accepted job"
    lab.smb("cd inbox", f"put {m / 'a.wav'} r2.wav")
    _one_accepted(lab, "r2", {"shared.mp4": _sha(m / "other.mp4")})  # the later ticket gets the new copy
    assert _sha(first / "inputs" / "shared.mp4") == _sha(m / "v.mp4")


def test_several_smbclient_producers_at_once(lab: Lab) -> None:
    m = lab.media
    procs = [subprocess.Popen(lab.smb_argv("cd inbox", f"put {m / 'a.wav'} p{i}.wav", f"put {m / 'big.mp4'} p{i}.mp4",
                                           f"put {_ticket(lab, f'p{i}', f'p{i}.wav', f'p{i}.mp4')} p{i}.toml"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(4)]
    for proc in procs:
        assert proc.wait(timeout=180) == 0
    for i in range(4):
        _one_accepted(lab, f"p{i}", {f"p{i}.wav": _sha(m / "a.wav"), f"p{i}.mp4": _sha(m / "big.mp4")})


def test_cp_and_rsync_through_the_fuse_smb_mount(lab: Lab, tmp_path: Path) -> None:
    m = lab.media
    inbox = lab.mount / "inbox"
    shutil.copyfile(m / "a.wav", inbox / "cp.wav")
    shutil.copyfile(m / "big.mp4", inbox / "cp.mp4")
    shutil.copyfile(_ticket(lab, "cp", "cp.wav", "cp.mp4"), inbox / "cp.toml")
    _one_accepted(lab, "cp", {"cp.wav": _sha(m / "a.wav"), "cp.mp4": _sha(m / "big.mp4")})
    folder = tmp_path / "lesson9"
    (folder / "media").mkdir(parents=True)
    shutil.copy(m / "a.wav", folder / "media" / "speech.wav")
    shutil.copy(m / "big.mp4", folder / "teacher.mp4")
    (folder / "job.toml").write_text('audio = "media/speech.wav"\nvideo = "teacher.mp4"\n')
    subprocess.run(["rsync", "-rt", str(folder), str(inbox) + "/"], check=True, timeout=300)
    _one_accepted(lab, "job", {"media/speech.wav": _sha(m / "a.wav"), "teacher.mp4": _sha(m / "big.mp4"),
                                "job.toml": _sha(folder / "job.toml")})
    assert not (lab.root / "inbox" / "lesson9").exists()


def test_every_drop_was_decided_and_nothing_was_lost(lab: Lab) -> None:
    left = sorted(p.name for p in (lab.root / "inbox").iterdir())
    # only the file the in-place re-copy test left for nobody, and nothing else, may remain
    assert set(left) <= {"shared.mp4"}, left
    assert list((lab.root / ".lipsyncd" / "intake").iterdir()) == []
