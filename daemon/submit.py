"""`lipsyncd submit`: drop a job the way a producer would (media first, ticket last) and optionally wait."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

from daemon.console import bar
from daemon.core import atomic, progress
from daemon.core import ticket as tickets
from daemon.core.config import Config
from daemon.core.job import Job
from daemon.core.share import Share
from daemon.core.state import JobState, jobs_in
from daemon.housekeeping.texts import duration


def submit(config: Config, args: argparse.Namespace) -> int:
    root = Path(config.share.root)
    inbox = root / "inbox"
    audio, video = Path(args.audio), Path(args.video)
    for path in (audio, video):
        if not path.is_file():
            print(f"lipsyncd: {path} is not a file", file=sys.stderr)
            return 2
    Share(root).prepare()  # the share may be newer than the appliance's first start: make its folders
    stem = f"{tickets.safe_stem(args.name or audio.stem, 40)}-{secrets.token_hex(2)}"
    names = {"audio": f"{stem}.audio{audio.suffix}", "video": f"{stem}.video{video.suffix}"}
    for key, src in (("audio", audio), ("video", video)):
        _copy_in(src, inbox / names[key])
    lines = [f'audio = "{names["audio"]}"', f'video = "{names["video"]}"', f'output = "{stem}.mp4"']
    if args.engine:
        lines.append(f'engine = "{args.engine}"')
    atomic.write_text(inbox / f"{stem}.toml", "\n".join(lines) + "\n")  # the ticket goes last
    print(f"submitted {stem}.toml to {inbox}")
    return _wait(root, tickets.safe_stem(stem), args.timeout) if args.wait else 0


def _copy_in(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f"{dst.name}.part")  # *.part names are ignored by intake until renamed
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _wait(root: Path, prefix: str, timeout: float) -> int:
    """Follow the job until done/ or failed/: one redrawn line on a terminal, a new line per change otherwise."""
    started = time.monotonic()
    tty = sys.stdout.isatty()
    last = ""
    while True:
        job = _find(root, prefix)
        line = _line(root, job)
        if line != last:
            if tty:
                width = shutil.get_terminal_size((80, 24)).columns - 1
                sys.stdout.write("\r" + line[:width].ljust(width))
            else:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            last = line
        if job is not None and job.state in (JobState.DONE.value, JobState.FAILED.value):
            if tty:
                print()
            return _outcome(job)
        if timeout and time.monotonic() - started > timeout:
            print(f"\nlipsyncd: gave up waiting after {timeout:.0f} s; the job continues", file=sys.stderr)
            return 1
        time.sleep(0.5)


def _find(root: Path, prefix: str) -> Job | None:
    for st in (JobState.DONE, JobState.FAILED, JobState.PROCESSING, JobState.STAGING):
        try:
            for entry in os.scandir(root / st.folder):
                if entry.name.startswith(prefix + "-"):
                    return Job(root=root, state=st.value, path=Path(entry.path))
        except OSError:
            continue
    return None


def _line(root: Path, job: Job | None) -> str:
    if job is None:
        intake = _read(root / ".lipsyncd" / "roles" / "intake.json") or {}
        if intake.get("paused"):
            return f"waiting in inbox/: intake is paused ({intake.get('pause_reason', '?')})"
        return "waiting for intake to accept the job..."
    if job.state == JobState.STAGING.value:
        ahead = _queued_before(root, job)
        return f"{job.id}: queued" + (f", {ahead} job(s) ahead" if ahead else ", next in line")
    if job.state != JobState.PROCESSING.value:
        return f"{job.id}: {job.state}"
    news = progress.read(job.path)
    if news is None or news.get("percent") is None:
        return f"{job.id}: processing (starting)"
    chunk = f" chunk {news['chunk']}/{news['chunks']}" if (news.get("chunks") or 0) > 1 else ""
    fps = f" {news['fps']:.1f} fps" if news.get("fps") else ""
    eta = f" ETA {duration(news['eta_s'], 'en')}" if news.get("eta_s") is not None else ""
    return f"{bar(news['percent'])}{chunk}{fps}{eta}"


def _queued_before(root: Path, job: Job) -> int:
    mine = (_read(job.path / "job.json") or {}).get("accepted_at") or 0
    count = 0
    for other in jobs_in(root, JobState.STAGING):
        accepted = (_read(other.path / "job.json") or {}).get("accepted_at") or 0
        count += other.id != job.id and accepted < mine
    return count


_read = atomic.read_dict


def _outcome(job: Job) -> int:
    report = job.report() or {}
    if job.state == JobState.DONE.value:
        print(f"done: {job.path / str(report.get('output', ''))}")
        return 0
    try:
        print((job.path / "error.txt").read_text(encoding="utf-8"), file=sys.stderr)
    except OSError:
        print(f"failed: {report.get('message', 'see report.json')}", file=sys.stderr)
    return 1
