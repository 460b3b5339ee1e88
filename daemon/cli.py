"""The `lipsyncd` command: one entry point, one error boundary, one subcommand per role or task.

Exit codes: 0 ok, 1 a job failed (`submit --wait`) or stopped by a second signal, 2 usage,
70 environment fault or bug (a process manager should restart us), 74 stdout refused our output (e.g. a
full device), 78 configuration error (it should not), 141 stdout's reader went away (`| head`), silently.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon import __version__, output
from daemon.core import logs
from daemon.core.config import ENGINES, Config, load_config
from daemon.core.errors import EXIT_CONFIG, EXIT_FAULT, ConfigError, EnvironmentFault, is_out_of_space
from daemon.core.lifecycle import StopNow
from daemon.core.settings import unknown_env
from daemon.core.share import Share

log = logging.getLogger(__name__)

Command = Callable[[Config, argparse.Namespace], int]
# LIPSYNCD_* variables that are not config keys (LIPSYNCD_UP: set by `lipsyncd up` for its children)
ENV_NOT_SETTINGS = ("LIPSYNCD_CONFIG", "LIPSYNCD_ROOT", "LIPSYNCD_LOG_LEVEL", "LIPSYNCD_UP")


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="PATH", default=default,
                        help="config file (default: $LIPSYNCD_CONFIG, else /etc/lipsyncd/config.toml, "
                             "else built-in defaults)")
    parser.add_argument("--root", metavar="PATH", default=default,
                        help="share root, overriding share.root (also $LIPSYNCD_ROOT)")
    parser.add_argument("--log-level", metavar="LEVEL", default=default,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="override general.log_level (also $LIPSYNCD_LOG_LEVEL): DEBUG, INFO, WARNING or ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipsyncd",
        description="Hot-folder appliance for audio-driven lip-sync video. Producers drop media and a "
                    "TOML ticket into <root>/inbox/; results appear in done/, reasons in failed/.",
        epilog="Run 'lipsyncd COMMAND --help' for a command's options. Exit codes: 0 ok, 1 job failed, "
               "70 environment fault (restart me), 78 configuration error (fix the config).")
    parser.add_argument("--version", action="version", version=f"lipsyncd {__version__}")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, suppress=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    add("up", "run intake, worker(s) and watchdog as child processes (demo / single box); Ctrl-C stops all")
    add("intake", "run the intake role: watch inbox/, accept or reject drops (for supervisord/systemd)")
    worker = add("worker", "run one worker: claim staged jobs and render them (one per GPU)")
    worker.add_argument("--gpu", metavar="N", help="GPU this worker uses: an index in PCI bus order (as nvidia-smi "
                                                   "numbers them) or a GPU-UUID; sets its name gpuN")
    worker.add_argument("--name", metavar="NAME", help="worker name in heartbeats and status (default: gpu<N>)")
    add("watchdog", "run the watchdog role: detect stalls, alert chat robots, restart workers")
    status = add("status", "show queued, running, done and failed jobs")
    status.add_argument("--json", action="store_true",
                        help="print the status snapshot (the same data as <root>/status.json) as JSON")
    submit = add("submit", "copy AUDIO and VIDEO into the inbox, then a ticket naming them")
    submit.add_argument("audio", metavar="AUDIO", help="speech track file (any audio, or a video whose sound is used)")
    submit.add_argument("video", metavar="VIDEO", help="presenter video or still image file")
    submit.add_argument("--name", metavar="NAME",
                        help="job name, up to 40 characters kept (default: the audio file's name)")
    submit.add_argument("--engine", choices=ENGINES,
                        help="engine to render with, if intake.allowed_engines allows it (default: worker.engine)")
    submit.add_argument("--wait", action="store_true", help="show progress until done or failed; exit 1 on failure")
    submit.add_argument("--json", action="store_true",
                        help="print one JSON object {ticket, jobs: [{id, state, path, ...}], timed_out} once intake "
                             "has accepted the job (with --wait: once it finished) instead of text")
    submit.add_argument("--timeout", type=float, default=0, metavar="SECONDS",
                        help="with --wait or --json: give up after this many seconds, exit 1 (default: 0, never)")
    retry = add("retry", "move a failed job back into the queue")
    retry.add_argument("job", metavar="JOB", help="job id (a folder name in failed/)")
    doctor = add("doctor", "check config, share, disk, metrics and outbox folders, process manager, ffmpeg, "
                           "worker stack, GPU, checkpoints and chat robots; one PASS/FAIL/SKIP line per check, "
                           "exit 1 if any failed; changes nothing unless --fix")
    doctor.add_argument("--fix", action="store_true",
                        help="create the share's missing folders (and alerts.outbox_dir); run it as the service "
                             "user, so they get that user's ownership")
    doctor.add_argument("--json", action="store_true",
                        help="print the verdicts as one JSON object ({ok, failed, warnings, checks: [{name, "
                             "status, detail}]}) instead of lines")
    doctor.add_argument("--send-test-alert", action="store_true",
                        help="also send one test message to every configured chat robot and report each result")
    show = add("config", "print the effective configuration (defaults, file, LIPSYNCD_* variables and --root "
                         "merged) as TOML, each value's origin noted, secrets masked")
    show.add_argument("--json", action="store_true", help="as one JSON object {key: {value, from}}")
    init = add("init", "write the commented config.toml, the systemd units and the supervisord program file "
                       "into DIR (never overwriting: if any exists, nothing is written)")
    init.add_argument("dir", nargs="?", default=".", metavar="DIR",
                      help="folder to write into, created if missing (default: the current folder); "
                           "e.g. /etc/lipsyncd")
    init.add_argument("--print", metavar="NAME",
                      help="print one shipped file to stdout instead (e.g. config.toml, "
                           "systemd/lipsyncd-worker@.service, supervisor/lipsyncd.conf)")
    probe = add("probe", "describe a media file the way the worker sees it")
    probe.add_argument("file", metavar="FILE", help="media file to probe (audio, video or still image)")
    return parser


def _dispatch(name: str) -> Command:
    # imported lazily: intake and watchdog never import torch or the media stack
    if name == "worker":
        from daemon import extras

        if missing := extras.missing_worker_stack():
            raise ConfigError(f"this install has no worker stack (missing {', '.join(missing)}): it can run "
                              f"intake and the watchdog only; for a worker: {extras.INSTALL}")
        from daemon.worker.role import run as worker_run

        return worker_run
    from daemon import configview, submit, tasks

    return {"config": configview.show, "up": tasks.up, "status": tasks.status, "submit": submit.submit,
            "retry": tasks.retry, "doctor": tasks.doctor, "probe": tasks.probe, "intake": tasks.intake,
            "watchdog": tasks.watchdog}[name]


def main(argv: Sequence[str] | None = None) -> int:
    output.guard()
    try:
        code = _run(argv)
        output.finish()
        return code
    except output.OutputError as exc:  # the reader's side (a closed pipe, a full /dev/full), never ours
        return output.handle(exc)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "init":  # needs no config: it is how an operator gets one
        from daemon import skel

        return skel.init(args)
    try:
        config = load_config(args.config, args.root)
    except ConfigError as exc:
        print(f"lipsyncd: configuration error: {exc}", file=sys.stderr)
        if args.command == "watchdog":  # it still watches, and alerts about the config
            from daemon.sentinel.fallback import run_on_broken_config

            return run_on_broken_config(args, exc)
        return EXIT_CONFIG
    level = args.log_level or os.environ.get("LIPSYNCD_LOG_LEVEL") or config.general.log_level
    errors_log = None if args.command in ("status", "probe", "doctor", "submit", "config") else \
        _errors_log(config)
    logs.setup(args.command, level, errors_log, host_name(config), logs.Rotation.of(config.general))
    for warning in unknown_env(Config, os.environ, ENV_NOT_SETTINGS):
        log.warning("%s", warning)
    try:
        if args.command in ("intake", "worker", "up"):  # a late mount is not a config error (exit 70)
            from daemon.core.mount import wait_for_root

            wait_for_root(Path(config.share.root), config.share.mount_wait_s)
        return _dispatch(args.command)(config, args)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        print(f"lipsyncd: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except EnvironmentFault as exc:
        log.error("environment fault: %s", exc)
        return EXIT_FAULT
    except output.OutputError:
        raise  # the reader's business, answered in main(); neither a fault of ours nor a full share
    except StopNow:
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if not is_out_of_space(exc):
            log.critical("bug: %s", traceback.format_exc())
        else:  # a full share is the machine's state, not a bug: exit like any environment fault
            log.error("environment fault: the share is full (%s): free space on it; %s", exc.strerror,
                      exc.filename or "")
        return EXIT_FAULT
    except Exception:
        log.critical("bug: %s", traceback.format_exc())
        return EXIT_FAULT


def _errors_log(config: Config) -> Path | None:
    # the root must exist (a mounted share); its .lipsyncd/logs/<host>/ is created on a role's first start
    root = Path(config.share.root)
    return logs.host_folder(Share(root).internal, host_name(config)) / "errors.log" if root.is_dir() else None


def host_name(config: Config) -> str:
    return config.general.host_name or socket.gethostname()
