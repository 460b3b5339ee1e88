"""Operator commands that are not roles: up, status, retry, doctor, probe (submit lives in submit.py)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from daemon.core import heartbeat, snapshot, state
from daemon.core.config import Config
from daemon.core.job import ATTEMPT, ERROR, REPORT, SPEC, Job
from daemon.core.lifecycle import Stopper
from daemon.core.share import Share
from daemon.core.state import JobState

log = logging.getLogger(__name__)


def up(config: Config, args: argparse.Namespace) -> int:
    from daemon.launcher import ChildSpec, Launcher, role_argv

    share = Share(Path(config.share.root))
    share.prepare()
    cfg_path = args.config
    root = str(share.root)
    specs = [ChildSpec("intake", role_argv("intake", cfg_path, root))]
    for gpu in worker_gpus(config):
        pinned = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": gpu}
        argv = role_argv("worker", cfg_path, root, ["--gpu", gpu])
        specs.append(ChildSpec(f"worker-{heartbeat.worker_name(gpu)}", argv, pinned))
    specs.append(ChildSpec("watchdog", role_argv("watchdog", cfg_path, root)))
    stop = Stopper()
    stop.install(hangup=True)  # a closed terminal stops up, which stops its children (own groups)
    log.info("lipsyncd up: %s on %s (Ctrl-C stops all)", ", ".join(s.name for s in specs), root)
    return Launcher(specs, share.control, stop).run()


def worker_gpus(config: Config) -> list[str]:
    """GPU ids for `up`: worker.gpus as a list, or every GPU NVML sees ("all"; one CPU worker if none)."""
    wanted = config.worker.gpus.strip()
    if wanted and wanted != "all":
        return [g.strip() for g in wanted.split(",") if g.strip()]
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        return [str(i) for i in range(count)] or ["0"]
    except Exception:  # NVML missing or no driver: one worker on the CPU
        return ["0"]


def intake(config: Config, args: argparse.Namespace) -> int:
    """The intake role with the share's housekeeping (status board, retention) beside its scans.

    Once per share and never on the GPU hosts' workers: the shell wires the two rooms together.
    """
    from daemon.housekeeping.keeper import Housekeeper
    from daemon.intake.role import run

    return run(config, args, beside=Housekeeper(config))


def watchdog(config: Config, args: argparse.Namespace) -> int:
    from daemon.sentinel.role import run

    return run(config, args)


def status(config: Config, args: argparse.Namespace) -> int:
    from daemon import console

    share = Share(config.root)
    root = share.root
    if not share.staging.is_dir():
        print(f"lipsyncd: {root} is not a lipsyncd share (no staging/ folder): mount the share or pass --root",
              file=sys.stderr)
        return 2
    snap = snapshot.collect(root, recent=config.status.recent_jobs)
    if args.json:
        json.dump(snap, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    sys.stdout.write(console.render(snap, config.share.root))
    return 0


def retry(config: Config, args: argparse.Namespace) -> int:
    share = Share(config.root)
    path = share.failed / args.job
    if not path.is_dir():
        print(f"lipsyncd: no job {args.job!r} in {share.failed}", file=sys.stderr)
        return 2
    if not (path / SPEC).is_file():
        print(f"lipsyncd: {args.job} was rejected at intake (its ticket or files were wrong); "
              "fix them and drop the job into inbox/ again", file=sys.stderr)
        return 2
    job = Job(root=share.root, state=JobState.FAILED, path=path)
    previous = path / "previous-attempts"
    previous.mkdir(exist_ok=True)
    for name in (ERROR, REPORT):
        if (path / name).exists():
            (path / name).rename(previous / f"{job.attempt()}-{name}")
    (path / ATTEMPT).write_text('{"attempt": 1}\n')
    state.move(job, JobState.STAGING, "retry requested by operator")
    print(f"{args.job}: back in the queue")
    return 0


def doctor(config: Config, args: argparse.Namespace) -> int:
    from daemon.doctor import doctor as run_checks

    return run_checks(config, args)


def probe(config: Config, args: argparse.Namespace) -> int:
    """What the worker sees in a file: streams, what it would normalise, or the producer's reason."""
    from daemon.core import messages
    from daemon.core.errors import JobRejected
    from daemon.worker.media.probe import describe

    try:
        print(describe(Path(args.file).resolve(), config.media))
    except JobRejected as exc:
        msg = messages.render(exc.code, config.general.language, exc.params)
        print(f"lipsyncd: {msg.what}\n  {msg.todo}", file=sys.stderr)
        return 1
    return 0
