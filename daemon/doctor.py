"""`lipsyncd doctor`: one PASS/FAIL/WARN/SKIP line per check of this machine and share; exit 1 if any FAIL.

Read-only unless `--fix` (which creates the share's missing folders and an outbox_dir). A check that
needs another which failed is skipped and says so. `--json` prints the same verdicts for machines.
A check is one function `(Context) -> str` returning its PASS text or raising Fail/Warn/Skip, plus one
line in CHECKS; the media, GPU and checkpoint checks live in doctor_media.py, the process manager's in
doctor_manager.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import doctor_manager, doctor_media, extras
from daemon.core.config import Config, find_config_file
from daemon.core.errors import LipsyncError
from daemon.core.share import INTERNAL, STATE_FOLDERS, Share
from daemon.verdicts import Fail, Skip, Warn

if TYPE_CHECKING:  # the robots import requests: only when a check needs them
    from daemon.sentinel.alerts.robots import Robot

__all__ = ["CHECKS", "Check", "Context", "Fail", "Skip", "Warn", "doctor"]

@dataclass(frozen=True)
class Context:
    config: Config
    args: argparse.Namespace

    @property
    def fix(self) -> bool:
        return bool(getattr(self.args, "fix", False))

    @property
    def root(self) -> Path:
        return Path(self.config.share.root)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Context], str]
    needs: tuple[str, ...] = ()  # checks whose FAIL (or skip) makes this one meaningless


@dataclass(frozen=True)
class Verdict:
    name: str
    status: str  # PASS, WARN, FAIL, SKIP
    detail: str


def doctor(config: Config, args: argparse.Namespace) -> int:
    ctx = Context(config, args)
    as_json = bool(getattr(args, "json", False))
    warnings = _warnings(ctx)
    if not as_json:
        for text in warnings:
            print(f"WARN {text}", flush=True)
    verdicts: dict[str, Verdict] = {}
    for check in CHECKS:
        verdicts[check.name] = verdict = _judge(check, ctx, verdicts)
        if not as_json:
            print(f"{verdict.status} {verdict.name}: {verdict.detail}", flush=True)
    results = list(verdicts.values())
    if getattr(args, "send_test_alert", False):
        results += _send_test_alerts(config, quiet=as_json)
    failed = sum(v.status == "FAIL" for v in results)
    if as_json:
        json.dump({"ok": not failed, "failed": failed, "warnings": warnings, "fix": ctx.fix,
                   "checks": [v.__dict__ for v in results]}, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print("all checks passed" if not failed else f"{failed} check(s) FAILED")
    return 1 if failed else 0


def _judge(check: Check, ctx: Context, done: dict[str, Verdict]) -> Verdict:
    blocked = [n for n in check.needs if n in done and done[n].status not in ("PASS", "WARN")]
    if blocked:
        return Verdict(check.name, "SKIP", f"not checked: needs {', '.join(blocked)}, which did not pass")
    try:
        return Verdict(check.name, "PASS", check.run(ctx))
    except Skip as exc:
        return Verdict(check.name, "SKIP", str(exc))
    except Warn as exc:
        return Verdict(check.name, "WARN", str(exc))
    except (Fail, LipsyncError) as exc:
        return Verdict(check.name, "FAIL", str(exc))
    except OSError as exc:  # the reason in words and the path, not a raw "[Errno 2] ..."
        where = f": {exc.filename}" if exc.filename else ""
        return Verdict(check.name, "FAIL", f"{exc.strerror or exc}{where}")


def _warnings(ctx: Context) -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["running as root: writability below is root's, not the service user's; run it as that user "
            "(e.g. `sudo -u lipsyncd lipsyncd doctor`)" + (", and --fix as root gives new folders the share "
                                                          "root's owner" if ctx.fix else "")]


def _config(ctx: Context) -> str:
    path = find_config_file(getattr(ctx.args, "config", None), os.environ)
    origin = str(path) if path else "built-in defaults (no config file)"
    c = ctx.config
    return f"valid ({origin}); share {c.share.root}, engine {c.worker.engine}, language {c.general.language}"


def _share(ctx: Context) -> str:
    root = ctx.root
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise Fail(f"share.root = {root} {what}: mount the share there or set share.root (or --root / "
                   "LIPSYNCD_ROOT) to the right folder")
    if ctx.fix:
        return _prepare(root)
    names = (*STATE_FOLDERS, INTERNAL)
    missing = [n for n in names if not (root / n).is_dir()]
    if missing:
        raise Fail(f"{', '.join(f'{n}/' for n in missing)} missing in {root}: start intake once as the service "
                   "user, or run `lipsyncd doctor --fix` as that user, to create them")
    dev = os.stat(root).st_dev
    apart = [n for n in names if os.stat(root / n).st_dev != dev]
    if apart:
        raise Fail(f"{', '.join(apart)} on another filesystem than {root}: jobs move by rename, so every "
                   "folder must be on one mount")
    locked = [n for n in names if not os.access(root / n, os.W_OK | os.X_OK)]
    if locked:
        raise Fail(f"{', '.join(locked)} in {root} not writable by uid {os.geteuid()}: fix the share's "
                   "permissions or run as its owner")
    return f"folders present, on one filesystem, writable by uid {os.geteuid()} (read-only check; --fix also " \
           "creates missing folders and proves a rename through each)"


def _prepare(root: Path) -> str:
    before = {p for p in (*STATE_FOLDERS, INTERNAL) if (root / p).exists()}
    Share(root).prepare()  # raises ConfigError/ShareUnreachable with the reason
    made = [p for p in (*STATE_FOLDERS, INTERNAL) if p not in before]
    if made and os.geteuid() == 0:  # never leave root-owned folders the service user cannot write
        owner = os.stat(root)
        for name in made:
            for path in [root / name, *(root / name).rglob("*")]:
                os.chown(path, owner.st_uid, owner.st_gid)
    return (f"created {', '.join(made)}; " if made else "") + \
        "folders present, all on one filesystem, writable (a test file was renamed through each)"


def _disk(ctx: Context) -> str:
    st = os.statvfs(ctx.root)
    free, pause = st.f_bavail * st.f_frsize, ctx.config.intake.pause_below_free_gb
    if pause and free < pause * 1e9:
        raise Fail(f"{free / 1e9:.1f} GB free, below intake.pause_below_free_gb = {pause:g}: intake is paused; "
                   "clear done/ or failed/ or add space")
    return f"{free / 1e9:.1f} GB free of {st.f_blocks * st.f_frsize / 1e9:.1f} GB (intake pauses below {pause:g} GB)"


def _writable_dir(key: str, value: str, purpose: str, fix: bool) -> str:
    path = Path(value)
    if fix and not path.exists():
        path.mkdir(parents=True)
    if not path.is_dir():
        raise Fail(f"{key} = {path}: {'not a folder' if path.exists() else 'no such folder'}; {purpose}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise Fail(f"{key} = {path}: not writable by uid {os.geteuid()}; {purpose}")
    return f"{path} is writable by uid {os.geteuid()}"


def _textfile_dir(ctx: Context) -> str:
    value = ctx.config.watchdog.textfile_dir
    if not value:
        raise Skip("watchdog.textfile_dir is empty: no Prometheus textfile is written")
    # node_exporter owns this folder: doctor never creates it, even with --fix
    return _writable_dir("watchdog.textfile_dir", value, "the watchdog writes lipsyncd_watchdog.prom there for "
                         "node_exporter's textfile collector", fix=False)


def _outbox_dir(ctx: Context) -> str:
    value = ctx.config.alerts.outbox_dir
    if not value:
        raise Skip(f"alerts.outbox_dir is empty: alerts wait in {Share(ctx.root).outbox} (checked with "
                   "the share)")
    return _writable_dir("alerts.outbox_dir", value, "the watchdog keeps unsent alerts there", fix=ctx.fix)


def _worker_stack(ctx: Context) -> str:
    missing = extras.missing_worker_stack()
    if missing:
        raise Skip(f"{', '.join(missing)} not installed: this host can run intake and the watchdog, not a "
                   f"worker; for a worker: {extras.INSTALL}")
    return f"{', '.join(extras.WORKER.values())} importable: this host can run a worker"


def _channels(ctx: Context) -> str:
    from daemon.sentinel.alerts.robots import VENDORS

    names = [r.name for r in _robots(ctx.config)]
    if not names:
        first, *rest = VENDORS
        raise Skip(f"no chat robot configured ([alerts.{first}] / {' / '.join(rest)}): alerts only go to "
                   "the watchdog log")
    return f"configured: {', '.join(names)} (use --send-test-alert to send each one a message)"


CHECKS: list[Check] = [
    Check("config", _config),
    Check("share", _share),
    Check("disk", _disk, needs=("share",)),
    Check("metrics textfile", _textfile_dir),
    Check("alert outbox", _outbox_dir),
    Check("process manager", lambda c: doctor_manager.process_manager(c.config)),
    Check("ffmpeg", lambda c: doctor_media.tool(c.config, "ffmpeg")),
    Check("ffprobe", lambda c: doctor_media.tool(c.config, "ffprobe")),
    Check("ffmpeg codecs", lambda c: doctor_media.codecs(c.config), needs=("ffmpeg",)),
    Check("worker stack", _worker_stack),
    Check("media box", lambda c: doctor_media.media_box(c.config), needs=("worker stack",)),
    Check("gpu", lambda c: doctor_media.gpu(c.config)),
    Check("wav2lip checkpoint", lambda c: doctor_media.checkpoint(c.config, "checkpoint"),
          needs=("worker stack",)),
    Check("face detector checkpoint", lambda c: _face_detector(c.config), needs=("worker stack",)),
    Check("alert channels", _channels),
]


def _face_detector(config: Config) -> str:
    """wav2lip without S3FD runs on the offline detector's boxes through an unfitted calibration: say so."""
    w2l = config.engines.wav2lip
    in_use = config.worker.engine == "wav2lip" or bool(w2l.checkpoint)
    if in_use and not w2l.face_detector_checkpoint:
        raise Warn("engines.wav2lip.face_detector_checkpoint is empty: wav2lip's face boxes will come from the "
                   "offline detector through a calibration toward S3FD's geometry that was never fitted, so "
                   "lip-sync quality may suffer; supply s3fd.pth (~86 MB) and set the key")
    return doctor_media.checkpoint(config, "face_detector_checkpoint")


def _robots(config: Config) -> list[Robot]:
    from daemon.sentinel.alerts.channels import build_outbox

    quiet = logging.getLogger("daemon.sentinel.alerts.channels")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "no robot configured" warning is our SKIP line here
    try:
        outbox = build_outbox(config, config.general.host_name or socket.gethostname(), None)
    finally:
        quiet.setLevel(level)
    return [courier.robot for courier in outbox.couriers]


TEST_ALERT = {"en": ("lipsyncd test alert from {host}",
                     "Sent by `lipsyncd doctor --send-test-alert` on {host}: the {channel} channel works."),
              "zh": ("lipsyncd 测试告警（{host}）",
                     "由 {host} 上的 `lipsyncd doctor --send-test-alert` 发送：{channel} 通道工作正常。")}


def _send_test_alerts(config: Config, quiet: bool) -> list[Verdict]:
    """One message per configured robot, sent now (no queue, no rate limit)."""
    from daemon.sentinel.alerts.channels import language

    host = config.general.host_name or socket.gethostname()
    title_t, text_t = TEST_ALERT.get(language(config), TEST_ALERT["en"])
    out = []
    for robot in _robots(config):
        name = robot.name
        outcome = robot.send(title_t.format(host=host), text_t.format(host=host, channel=name))
        if outcome.delivery.value == "sent":
            out.append(Verdict(f"test alert {name}", "PASS", "delivered"))
        else:
            hint = f" ({outcome.hint})" if outcome.hint else \
                " (this host's clock is off: fix NTP)" if outcome.clock_skew else ""
            out.append(Verdict(f"test alert {name}", "FAIL",
                               f"{outcome.delivery.value}, code {outcome.code}: {outcome.detail}{hint}"))
    if not out:
        out.append(Verdict("test alert", "SKIP", "no chat robot configured"))
    if not quiet:
        for v in out:
            print(f"{v.status} {v.name}: {v.detail}", flush=True)
    return out
