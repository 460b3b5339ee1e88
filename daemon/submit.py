"""`lipsyncd submit`: drop a job the way a producer would (media first, ticket last) and optionally wait."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
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
    share = Share(config.root)
    root, inbox = share.root, share.inbox
    audio, video = Path(args.audio), Path(args.video)
    for path in (audio, video):
        if not path.is_file():
            print(f"lipsyncd: {path} is not a file", file=sys.stderr)
            return 2
    share.prepare()  # the share may be newer than the appliance's first start: make its folders
    stem = f"{tickets.safe_stem(args.name or audio.stem, 40)}-{secrets.token_hex(2)}"
    names = {"audio": f"{stem}.audio{audio.suffix}", "video": f"{stem}.video{video.suffix}"}
    for key, src in (("audio", audio), ("video", video)):
        _copy_in(src, inbox / names[key])
    lines = [f'audio = "{names["audio"]}"', f'video = "{names["video"]}"', f'output = "{stem}.mp4"']
    if args.engine:
        lines.append(f'engine = "{args.engine}"')
    ticket = inbox / f"{stem}.toml"
    atomic.write_text(ticket, "\n".join(lines) + "\n")  # the ticket goes last
    prefix = tickets.safe_stem(stem)
    if getattr(args, "json", False):
        return _report_json(root, ticket, prefix, args)
    print(f"submitted {stem}.toml to {inbox}")
    return _wait(root, prefix, args.timeout) if args.wait else 0


def _copy_in(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f"{dst.name}.part")  # *.part names are ignored by intake until renamed
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _wait(root: Path, prefix: str, timeout: float) -> int:
    """Follow the job until done/ or failed/: one redrawn line on a terminal, a new line per change otherwise."""
    tty = sys.stdout.isatty()
    last = ""

    def show(job: Job | None) -> None:
        nonlocal last
        line = _line(root, job)
        if line == last:
            return
        if tty:
            width = shutil.get_terminal_size((80, 24)).columns - 1
            sys.stdout.write("\r" + line[:width].ljust(width))
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        last = line

    job = _follow(root, prefix, timeout, _finished, show)
    if tty and last:
        print()
    if job is None:
        print(f"\nlipsyncd: gave up waiting after {timeout:.0f} s; the job continues", file=sys.stderr)
        return 1
    return _outcome(job)


def _report_json(root: Path, ticket: Path, prefix: str, args: argparse.Namespace) -> int:
    """--json: once intake has named the job (or, with --wait, once it finished), one JSON object."""
    job = _follow(root, prefix, args.timeout, _finished if args.wait else lambda j: j is not None, None)
    out: dict[str, object] = {"ticket": str(ticket), "jobs": [], "timed_out": job is None}
    if job is not None:
        report = job.report() or {}
        entry: dict[str, object] = {"id": job.id, "state": job.state.value, "path": str(job.path)}
        if job.state is JobState.DONE and report.get("output"):
            entry["output"] = str(job.path / str(report["output"]))
        if job.state is JobState.FAILED:
            entry["code"], entry["message"] = report.get("code"), report.get("message")
        out["jobs"] = [entry]
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()
    failed = job is None or (args.wait and job.state is JobState.FAILED)
    return 1 if failed else 0


def _finished(job: Job | None) -> bool:
    return job is not None and job.state in (JobState.DONE, JobState.FAILED)


def _follow(root: Path, prefix: str, timeout: float, enough: Callable[[Job | None], bool],
            show: Callable[[Job | None], None] | None) -> Job | None:
    """Poll the share for the job until `enough(job)`; None if `timeout` (seconds, 0 = none) ran out first."""
    started = time.monotonic()
    while True:
        job = _find(root, prefix)
        if show is not None:
            show(job)
        if enough(job):
            return job
        if timeout and time.monotonic() - started > timeout:
            return None
        time.sleep(0.5)


def _find(root: Path, prefix: str) -> Job | None:
    for st in (JobState.DONE, JobState.FAILED, JobState.PROCESSING, JobState.STAGING):
        try:
            for entry in os.scandir(Share(root).folder(st)):
                if entry.name.startswith(prefix + "-"):
                    return Job(root=root, state=st, path=Path(entry.path))
        except OSError:
            continue
    return None


def _line(root: Path, job: Job | None) -> str:
    if job is None:
        intake = _read(Share(root).roles / "intake.json") or {}
        if intake.get("paused"):
            return f"waiting in inbox/: intake is paused ({intake.get('pause_reason', '?')})"
        return "waiting for intake to accept the job..."
    if job.state is JobState.STAGING:
        ahead = _queued_before(root, job)
        return f"{job.id}: queued" + (f", {ahead} job(s) ahead" if ahead else ", next in line")
    if job.state is not JobState.PROCESSING:
        return f"{job.id}: {job.state.value}"
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
    if job.state is JobState.DONE:
        print(f"done: {job.path / str(report.get('output', ''))}")
        return 0
    try:
        print((job.path / "error.txt").read_text(encoding="utf-8"), file=sys.stderr)
    except OSError:
        print(f"failed: {report.get('message', 'see report.json')}", file=sys.stderr)
    return 1
