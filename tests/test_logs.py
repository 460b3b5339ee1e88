"""Log records are one line each, carry the job id while a job renders, and this host's files rotate by size
without losing a line, even with several processes appending at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon.core import logs


def _run(tmp_path: Path, body: str) -> tuple[list[str], list[str]]:
    """Run `body` in a fresh process after logs.setup(); its stderr lines and its errors.log lines."""
    errors = tmp_path / "logs" / "h1" / "errors.log"
    script = ("import logging, threading\nfrom pathlib import Path\nfrom daemon.core import logs\n"
              f"logs.setup('worker', 'INFO', Path({str(errors)!r}), 'h1', logs.Rotation(1_000_000, 2))\n" + body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines(), errors.read_text().splitlines() if errors.exists() else []


def test_a_multi_line_alert_and_a_traceback_are_one_line_each(tmp_path: Path) -> None:
    stderr, written = _run(tmp_path, """
log = logging.getLogger("daemon.sentinel.alerts.outbox")
log.warning("ALERT [critical] worker stalled key=k id=1\\nline two of the body\\nline three")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("bug: something broke")
""")
    assert len(stderr) == 2 and len(written) == 2
    assert stderr[0].endswith("key=k id=1\\nline two of the body\\nline three")
    assert "Traceback (most recent call last):\\n" in written[1] and written[1].endswith("ValueError: boom")
    assert all(" h1 worker[" in line for line in written)


def test_every_record_while_a_job_renders_starts_with_its_id_from_any_thread(tmp_path: Path) -> None:
    stderr, written = _run(tmp_path, """
facepass = logging.getLogger("daemon.worker.faces.analysis")
with logs.job("lesson-20261201.123-abc123"):
    facepass.info("teacher.mp4: faces (96x96) in 25 frames analysed in 0.4 s (0 without a face)")
    logging.getLogger("daemon.worker.pipeline").info("lesson-20261201.123-abc123: chunk 1 of 2")
    helper = threading.Thread(target=lambda: facepass.warning("teacher.mp4: %d frames without a face", 3))
    helper.start()
    helper.join()
facepass.info("idle again")
""")
    assert [line.split(": ", 1)[1] for line in stderr] == [
        "lesson-20261201.123-abc123: teacher.mp4: faces (96x96) in 25 frames analysed in 0.4 s (0 without a face)",
        "lesson-20261201.123-abc123: chunk 1 of 2",  # not twice
        "lesson-20261201.123-abc123: teacher.mp4: 3 frames without a face",
        "idle again"]
    assert [line.split(": ", 1)[1] for line in written] == [
        "lesson-20261201.123-abc123: teacher.mp4: 3 frames without a face"]


APPENDER = """
import sys
from pathlib import Path
from daemon.core import logs
path, who = Path(sys.argv[1]), sys.argv[2]
for i in range(1500):
    logs.append(path, f"{who} {i:05d} " + "x" * 60 + "\\n", logs.Rotation(max_bytes=20_000, keep=60))
"""


def test_four_processes_appending_with_rotation_lose_and_tear_no_line(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "h1" / "alerts.jsonl"
    path.parent.parent.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), f"p{n}"]) for n in range(4)]
    assert [p.wait(timeout=240) for p in procs] == [0, 0, 0, 0]
    files = sorted(path.parent.glob("alerts.jsonl*"))
    assert 5 < len(files) <= 61
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 6000 and len(set(lines)) == 6000  # every line once, none torn or interleaved
    assert all(len(line.split(" ")) == 3 and len(line.split(" ")[2]) == 60 for line in lines)
    assert all(f.stat().st_size <= 20_000 for f in files)  # checked and rotated under the lock


def test_retention_keeps_only_the_configured_number_of_old_files(tmp_path: Path) -> None:
    path = tmp_path / "errors.log"
    for i in range(100):
        logs.append(path, f"{i:03d} " + "y" * 96 + "\n", logs.Rotation(max_bytes=1000, keep=3))
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["errors.log", "errors.log.1", "errors.log.2", "errors.log.3"]
    newest = path.read_text().splitlines()
    assert newest[-1].startswith("099") and (tmp_path / "errors.log.1").read_text().splitlines()[-1] < newest[0]


def test_every_module_logs_under_one_namespace_its_own_module_name() -> None:
    import re

    package = Path(__file__).resolve().parents[1] / "daemon"
    named = re.compile(r"^\w+ = logging\.getLogger\((.*)\)$", re.M)
    loggers = {str(p.relative_to(package)): m.group(1) for p in package.rglob("*.py")
               for m in named.finditer(p.read_text(encoding="utf-8"))}
    assert loggers and set(loggers.values()) == {"__name__"}, loggers
