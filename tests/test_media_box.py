"""The box around media children (issue 20), proven with real children: each limit is hit by a real
ffmpeg or a tiny helper and fails with a plain reason; the box has no network and a narrow view; our
own stops and the box's own failures are never blamed on the file; real jobs run unchanged inside it."""

from __future__ import annotations

import http.server
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import mediagen as g
import numpy as np
import psutil
import pytest
from conftest import REPO, Roles, drop_job, entries, env_for, wait_for

from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault, JobRejected
from daemon.worker.media import box, boxes, process
from daemon.worker.media.decoder import FrameSource
from daemon.worker.media.plan import make_plan
from daemon.worker.media.probe import probe

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]
PYTHON = os.path.realpath(sys.executable)  # the base interpreter; its prefix is bound read-only
CFG = MediaConfig()
LEVEL = box.level(CFG.sandbox, CFG.ffmpeg)
boxed_net = pytest.mark.skipif(LEVEL is box.Level.LIMITS, reason="this host allows no network namespace")
boxed_view = pytest.mark.skipif(LEVEL is not box.Level.BWRAP, reason="bubblewrap does not work on this host")


def limited(name: str, *, memory: int = 2048 * box.MiB, cpu_s: int = 600, file_bytes: int = box.NO_FILES,
            open_files: int = box.OPEN_FILES, reads: tuple[Path, ...] = (), writes: tuple[Path, ...] = (),
            tool: str = "decoder", level: box.Level = LEVEL) -> box.Box:
    return box.Box(subject=name, tool=tool, limits=box.Limits(memory, cpu_s, file_bytes, open_files),
                   level=level, reads=(Path(sys.base_prefix), *reads), writes=writes)


def png_bomb(path: Path, side: int = 16000) -> Path:
    """576 bytes that declare a 16000×16000 RGBA 16-bit picture: the decoder asks for 2 GB up front."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    head = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + side * 8) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_a_decoder_asked_to_allocate_past_its_memory_limit_fails_the_job_with_a_plain_reason(
        tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    cfg = replace(CFG, child_memory_mb=1536)  # deterministic on any core count; the bomb wants 2 GB
    limits = box.for_probe(cfg, bomb)
    assert limits.limits.memory_bytes == 1536 * box.MiB < 16000 * 16000 * 8
    argv = [*FFMPEG, "-f", "image2", "-pattern_type", "none", "-i", f"file:{bomb}", "-vf", "scale=64:64",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]
    with pytest.raises(JobRejected) as caught:
        process.run(argv, 60, capture_stdout=True, box=limits)
    assert caught.value.code == "media_limit"
    assert str(caught.value) == ("The file bomb.png made the decoder use more than 1.6 GB of memory: "
                                 "it may be damaged or crafted.")


def test_the_derived_memory_limit_grows_with_the_picture_and_leaves_a_1080p_decoder_room() -> None:
    cores = len(os.sched_getaffinity(0))
    small, full_hd, uhd = (box.memory_for(w * h, cores) for w, h in ((640, 360), (1920, 1080), (3840, 2160)))
    assert small < full_hd < uhd
    # measured peaks on 16 threads (bench/RESULTS.md, Issue 20): 1.55 GB decode, 2.7 GB 4K encode
    assert box.memory_for(1920 * 1080, 16) > 1.55e9 * 1.5 and box.memory_for(3840 * 2160, 16) > 2.7e9 * 1.5


def test_an_encoder_writing_past_its_size_cap_stops_at_the_cap_and_fails_with_a_plain_reason(
        tmp_path: Path) -> None:
    out = tmp_path / "work"
    out.mkdir()
    cap = box.MiB
    argv = [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=s=640x480:d=10", "-c:v", "rawvideo", "-f", "nut", "-y",
            f"file:{out / 'seg.nut'}"]
    with pytest.raises(JobRejected) as caught:
        process.run(argv, 60, box=limited("teacher.mp4", file_bytes=cap, writes=(out,), tool="encoder"))
    assert str(caught.value).startswith("The file teacher.mp4 made the encoder use more than 1 MB of output")
    assert 0 < (out / "seg.nut").stat().st_size <= cap


def test_a_child_spinning_past_its_cpu_seconds_fails_with_a_plain_reason() -> None:
    argv = [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=s=1280x720:d=600", "-c:v", "libx264", "-preset", "medium",
            "-f", "null", "-"]
    with pytest.raises(JobRejected) as caught:
        process.run(argv, 120, box=limited("loop.mp4", cpu_s=1))
    assert "more than 1 s of CPU time" in str(caught.value)


def test_a_child_opening_too_many_files_fails_with_a_plain_reason(tmp_path: Path) -> None:
    helper = "import os\nfds = [os.open('/dev/null', os.O_RDONLY) for _ in range(100)]\n"
    with pytest.raises(JobRejected) as caught:
        process.run([PYTHON, "-S", "-c", helper], 60, box=limited("many.mkv", open_files=32))
    assert "more than 32 open files" in str(caught.value)


def test_our_own_stop_of_a_boxed_child_is_not_read_as_a_limit() -> None:
    argv = [*FFMPEG, "-re", "-f", "lavfi", "-i", "testsrc2=s=320x240:d=600", "-f", "rawvideo", "pipe:1"]
    with process.Child(argv, stdout=True, box=limited("long.mp4", cpu_s=2)) as child:
        assert child.stdout.read(1024)
        child.kill()
        assert child.wait(30) != 0  # no JobRejected: we ended it
    with process.Child(argv, stdout=True, box=limited("long.mp4")) as child:
        assert child.stdout.read(1024)
        child.close(force=True)  # a reader giving up early (a halted decoder)


@boxed_view
def test_a_boxed_child_killed_while_its_sandbox_starts_leaves_no_process_and_no_stderr_reader(
        tmp_path: Path) -> None:
    """Killed in the moment bwrap sets its sandbox up, the sandbox once waited forever for a go-ahead,
    holding the stderr pipe (an immortal orphan and a reader thread per kill): now the tree dies whole."""
    marker = tmp_path / "kill-marker"
    marker.mkdir()
    argv = [*FFMPEG, "-f", "lavfi", "-i", "testsrc2=s=320x240:d=600", "-f", "rawvideo", "pipe:1"]
    for i in range(40):
        with process.Child(argv, stdout=True, box=limited("early.mp4", reads=(marker,))) as child:
            time.sleep(i % 8 * 0.0015)  # from the fork to past the sandbox's set-up, in steps
            if i % 2:
                child.kill()
            else:
                child.close(force=True)
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.endswith("-stderr")], 30,
             "every stderr reader to see its pipe close")
    left = [p for p in psutil.process_iter(["cmdline"]) if str(marker) in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_a_box_that_cannot_start_ffmpeg_is_the_appliances_fault_not_the_files() -> None:
    # 64 MB of address space cannot even map ffmpeg's libraries: the operator's limit, not the file
    with pytest.raises(EnvironmentFault) as caught:
        process.run([*FFMPEG, "-version"], 60, box=limited("fine.mp4", memory=64 * box.MiB))
    assert "could not start inside its" in str(caught.value) and "media.child_memory_mb" in str(caught.value)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records every request it gets."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


SOCKET_HELPER = ("import socket, sys\n"
                 "host, port = sys.argv[1].split(':')\n"
                 "s = socket.create_connection((host, int(port)), timeout=10)\n"
                 "s.sendall(b'GET /helper HTTP/1.0\\r\\n\\r\\n'); s.recv(100)\n")


@pytest.mark.parametrize("level", [box.Level.BWRAP, box.Level.UNSHARE])
def test_a_boxed_child_cannot_open_a_socket_that_an_unboxed_one_can(listener: tuple[str, list[str]],
                                                                     level: box.Level) -> None:
    if not _works(level.value):
        pytest.skip(f"{level.value} does not work on this host")
    address, seen = listener
    free = process.run([PYTHON, "-S", "-c", SOCKET_HELPER, address], 60)
    assert free.returncode == 0 and seen == ["/helper"], "control: the helper reaches the listener"
    boxed = process.run([PYTHON, "-S", "-c", SOCKET_HELPER, address], 60, box=limited("x.mp4", level=level))
    # bwrap's namespace has a loopback of its own (refused), unshare's has none up (unreachable)
    assert boxed.returncode != 0 and ("Connection refused" in boxed.stderr_tail
                                      or "Network is unreachable" in boxed.stderr_tail), boxed.stderr_tail
    assert seen == ["/helper"], "the boxed helper never reached the host's loopback"


@boxed_net
def test_a_boxed_ffmpeg_with_an_http_input_reaches_nothing(listener: tuple[str, list[str]]) -> None:
    address, seen = listener
    argv = [*FFMPEG, "-protocol_whitelist", "http,tcp", "-i", f"http://{address}/evil.mp4", "-f", "null", "-"]
    done = process.run(argv, 60, box=limited("evil.mp4"))
    assert done.returncode != 0 and seen == []


@boxed_view
def test_a_boxed_child_sees_its_input_read_only_its_work_folder_writable_and_nothing_else(
        tmp_path: Path) -> None:
    job = tmp_path / "processing" / "j1"
    work = job / ".work"
    work.mkdir(parents=True)
    mine, other = job / "teacher.mp4", tmp_path / "processing" / "other.mp4"
    mine.write_bytes(b"mine")
    other.write_bytes(b"someone else's")
    (job / "ticket.toml").write_text("audio = 'a.wav'")
    helper = ("import os, sys\n"
              "mine, other, ticket, work = sys.argv[1:]\n"
              "print(open(mine).read(), os.path.exists(other), os.path.exists(ticket), os.path.exists('/etc/passwd'),"
              " os.path.exists('/work'))\n"
              "open(os.path.join(work, 'out'), 'w').write('ok')\n"
              "try:\n    open(mine, 'w')\nexcept OSError as e:\n    print(e.strerror)\n")
    done = process.run([PYTHON, "-S", "-c", helper, str(mine), str(other), str(job / "ticket.toml"), str(work)],
                       60, capture_stdout=True, box=limited("teacher.mp4", reads=(mine,), writes=(work,)))
    assert done.returncode == 0, done.stderr_tail
    assert done.stdout.decode().split("\n")[:2] == ["mine False False False False", "Read-only file system"]
    assert (work / "out").read_text() == "ok" and mine.read_bytes() == b"mine"


def test_auto_takes_the_next_level_when_bubblewrap_is_missing_and_an_explicit_level_must_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bin"  # ffmpeg and the wrappers, but no bwrap
    bare.mkdir()
    for tool in ("ffmpeg", "prlimit", "unshare", "true"):
        (bare / tool).symlink_to(f"/usr/bin/{tool}")
    monkeypatch.setenv("PATH", str(bare))
    box.level.cache_clear()
    try:
        assert box.level("auto", "ffmpeg") in (box.Level.UNSHARE, box.Level.LIMITS)
        with pytest.raises(EnvironmentFault, match="media.sandbox = 'bwrap', but bwrap is not installed"):
            box.level("bwrap", "ffmpeg")
        assert box.level("limits", "ffmpeg") is box.Level.LIMITS
    finally:
        box.level.cache_clear()


def test_limits_hold_without_prlimit_through_the_trampoline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("ffmpeg", "bwrap", "unshare"):
        (bare / tool).symlink_to(f"/usr/bin/{tool}")
    monkeypatch.setenv("PATH", str(bare))
    argv = box.limits_argv(box.Limits(1 << 30, 5, box.MiB, 64))
    assert argv[0] == sys.executable
    out = tmp_path / "w"
    out.mkdir()
    ff = ["/usr/bin/ffmpeg", *FFMPEG[1:], "-f", "lavfi", "-i", "testsrc2=s=640x480:d=10", "-c:v", "rawvideo",
          "-f", "nut", "-y", f"file:{out / 'x.nut'}"]
    with pytest.raises(JobRejected, match="more than 1 MB of output"):
        process.run(ff, 60, box=limited("x.mp4", file_bytes=box.MiB, writes=(out,), tool="encoder"))


def test_a_real_decoder_of_a_job_runs_boxed_and_still_delivers_every_frame(tmp_path: Path) -> None:
    # 10 s of 320x240 (28 MB raw) while 2 s are read: far more than the socket buffer, so the decoder
    # is still running (blocked on its stdout) when we look at it
    clip = g.clip(tmp_path / "v.mp4", seconds=10, fps="25", size="320x240", audio=False)
    info = probe(clip, CFG)
    plan = make_plan(info, 2.0, CFG, None, {})
    source = FrameSource(CFG, info, plan)
    frames = np.empty((plan.frames, plan.frame_bytes), np.uint8)
    try:
        source.read(0, 4, frames[:4])
        inner = [p for p in psutil.Process().children(recursive=True) if p.name() == "ffmpeg"]
        assert inner, "the decoder runs"
        netns = {os.readlink(f"/proc/{p.pid}/ns/net") for p in inner}
        if LEVEL is not box.Level.LIMITS:
            assert os.readlink("/proc/self/ns/net") not in netns
        limits = inner[0].rlimit(psutil.RLIMIT_AS)
        assert limits[0] == boxes.for_decoder(CFG, info, plan).limits.memory_bytes
        source.read(4, plan.frames - 4, frames[4:])
    finally:
        source.close()
    assert frames.any(axis=1).all()  # every frame arrived (a black frame is all 16/128, never 0)


def run_doctor(root: Path, **env: str) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-m", "daemon", "doctor"], cwd=REPO, env=env_for(root, **env),
                          capture_output=True, text=True, timeout=120)
    found = {}
    for line in done.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        name, _, text = rest.partition(": ")
        found[name] = f"{verdict} {text}"
    return found


def test_doctor_says_which_box_is_active_and_fails_an_explicit_one_the_host_lacks(root: Path,
                                                                                  tmp_path: Path) -> None:
    found = run_doctor(root)["media box"]
    expected = {box.Level.BWRAP: "bubblewrap: no network", box.Level.UNSHARE: "unshare: no network",
                box.Level.LIMITS: "resource limits only"}[LEVEL]
    assert found.startswith("PASS media.sandbox = auto: " + expected), found
    assert "limits via prlimit" in found
    assert "resource limits only" in run_doctor(root, LIPSYNCD_MEDIA_SANDBOX="limits")["media box"]
    bare = tmp_path / "bin"  # everything doctor needs, except bubblewrap
    bare.mkdir()
    for tool in ("ffmpeg", "ffprobe", "prlimit", "unshare", "true"):
        (bare / tool).symlink_to(f"/usr/bin/{tool}")
    lacking = run_doctor(root, LIPSYNCD_MEDIA_SANDBOX="bwrap", PATH=str(bare))["media box"]
    assert lacking.startswith("FAIL media.sandbox = 'bwrap', but bwrap is not installed"), lacking


@pytest.mark.slow
def test_a_job_whose_file_hits_a_limit_fails_with_the_reason_and_the_worker_keeps_going(
        root: Path, media_dir: Path, roles: Roles) -> None:
    # a picture size the preflight lets through, under an operator's memory limit it cannot be decoded in
    env = env_for(root, LIPSYNCD_MEDIA_MAX_DIMENSION="16384", LIPSYNCD_MEDIA_CHILD_MEMORY_MB="1536")
    worker = roles.intake_and_worker(root, env)
    drop_job(root, "bomb", media_dir / "a.wav", png_bomb(media_dir.parent / "bomb.png"))
    wait_for(lambda: len(entries(root / "failed")) == 1, 120, "the bomb job in failed/")
    [failed] = entries(root / "failed")
    reason = (root / "failed" / failed / "error.txt").read_text()
    assert "The file bomb.mp4 made the decoder use more than 1.6 GB of memory: it may be damaged or crafted" in reason
    assert worker.poll() is None
    drop_job(root, "fine", media_dir / "a.wav", media_dir / "v.mp4")  # same limits, an ordinary job
    wait_for(lambda: len(entries(root / "done")) == 1, 120, "an ordinary job done after the bomb")
    assert worker.poll() is None


@pytest.mark.slow
def test_a_job_renders_the_same_result_at_every_level_this_host_allows(tmp_path: Path) -> None:
    from renderkit import audio_seconds, config, render

    speech = g.tone(tmp_path / "speech.wav", 1.5, ar=44100)
    video = g.clip(tmp_path / "v.mp4", seconds=2, fps="25", size="160x120")
    modes = ["limits"] + [m for m in ("unshare", "bwrap") if _works(m)]
    decoded = {}
    for mode in modes:
        work = tmp_path / mode
        work.mkdir()
        result = render(work, speech, video, cfg=config(sandbox=mode))
        assert abs(float(result.format["duration"]) - audio_seconds(speech)) < 0.05
        decoded[mode] = g.decode_gray(result.path, 160, 120).tobytes()
    assert len(set(decoded.values())) == 1, f"the pictures differ between levels {modes}"


def _works(mode: str) -> bool:
    try:
        box.level(mode, "ffmpeg")
    except EnvironmentFault:
        return False
    return True
