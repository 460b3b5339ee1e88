"""Children that flood stderr never hang us: the drain keeps up and keeps only a bounded tail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mediagen as g

from daemon.worker.media import process

FLOOD = 3 * 1024 * 1024  # 3 MB of log: 48× the 64 KiB pipe that deadlocks an undrained child


def test_run_survives_a_child_that_floods_stderr() -> None:
    script = f"import sys; sys.stderr.write('e' * {FLOOD}); sys.stderr.flush(); print('finished')"
    done = process.run([sys.executable, "-c", script], timeout_s=30, capture_stdout=True)
    assert done.returncode == 0 and done.stdout.strip() == b"finished"
    assert 0 < len(done.stderr_tail) <= process.STDERR_TAIL_BYTES + 8192


def test_streaming_child_interleaving_frames_and_floods_is_read_to_the_end() -> None:
    # like a decoder on a corrupt file: one error line per frame, a lot of them, between frames
    script = ("import sys\n"
              "for i in range(200):\n"
              "    sys.stderr.write('corrupt macroblock ' * 1000 + '\\n'); sys.stderr.flush()\n"
              "    sys.stdout.buffer.write(bytes([i % 256]) * 4096); sys.stdout.flush()\n")
    frame = bytearray(4096)
    seen = []
    with process.Child([sys.executable, "-c", script], stdout=True, pipe_size=1 << 20) as child:
        while True:
            got = 0
            while got < len(frame):
                k = child.stdout.readinto(memoryview(frame)[got:])
                if not k:
                    break
                got += k
            if got < len(frame):
                break
            seen.append(frame[0])
        assert child.wait(30) == 0
    assert seen == [i % 256 for i in range(200)]
    assert "corrupt macroblock" in child.stderr_tail()


def test_real_ffmpeg_with_trace_logging_streams_without_hanging(tmp_path: Path) -> None:
    clip = g.clip(tmp_path / "a.mp4", seconds=4, fps="250", size="64x48", audio=False)
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "trace", "-debug_ts", "-i", str(clip),
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]
    measured = subprocess.run(argv, capture_output=True, timeout=60)
    assert len(measured.stderr) > 1024 * 1024, "precondition: this command logs more than 1 MB"
    frame_bytes = 64 * 48 * 3 // 2
    with process.Child(argv, stdout=True) as child:
        total = 0
        while block := child.stdout.read(65536):
            total += len(block)
        assert child.wait(60) == 0
    assert total == 1000 * frame_bytes
