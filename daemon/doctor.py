"""`lipsyncd doctor`: one PASS/FAIL/WARN/SKIP line per check of this machine and share; exit 1 if any FAIL.

Checks: config, share folders, free space, ffmpeg/ffprobe with the codecs and filters our command
lines use, GPUs (NVML), engine checkpoints, chat robots; `--send-test-alert` sends each robot a message.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.core.config import Config, find_config_file
from daemon.core.errors import LipsyncError
from daemon.core.share import Share

# what the worker's ffmpeg command lines need (daemon/worker/media/*): keep in step
ENCODERS = ("libx264", "aac", "pcm_s16le", "pcm_f32le")
DECODERS = ("h264", "hevc", "mpeg4", "aac", "mp3", "pcm_s16le", "png", "mjpeg")
FILTERS = ("scale", "format", "fps", "setsar", "aresample")
GPU_MIN_FREE = 1e9  # wav2lip in fp16 with a chunk of frames needs about this much GPU memory
_CODEC_LINE = re.compile(r"^\s*[VASDFXB.]{6}\s+(\S+)")
_FILTER_LINE = re.compile(r"^\s*[TSC.]{3}\s+(\S+)\s+\S+->\S+")


class Skip(Exception):
    """The check does not apply here; the message says why."""


class Fail(Exception):
    """The check failed; the message says what is wrong and what to do."""


class Warn(Exception):
    """The check passed with a caveat the operator should act on (a WARN line; not a failure)."""


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[], str]


def doctor(config: Config, args: argparse.Namespace) -> int:
    checks = [Check("config", lambda: _config(config, args)), Check("share", lambda: _share(config)),
              Check("disk", lambda: _disk(config)),
              Check("ffmpeg", lambda: _tool(config, "ffmpeg")), Check("ffprobe", lambda: _tool(config, "ffprobe")),
              Check("ffmpeg codecs", lambda: _codecs(config)), Check("media box", lambda: _media_box(config)),
              Check("gpu", lambda: _gpu(config)),
              Check("wav2lip checkpoint", lambda: _checkpoint(config, "checkpoint", "check_checkpoint")),
              Check("face detector checkpoint", lambda: _face_detector(config)),
              Check("alert channels", lambda: _channels(config)),
              Check("process manager", lambda: _process_manager(config))]
    failed = sum(not _report(check.name, check.run) for check in checks)
    if getattr(args, "send_test_alert", False):
        failed += _send_test_alerts(config)
    print(f"{'all checks passed' if not failed else f'{failed} check(s) FAILED'}")
    return 1 if failed else 0


def _report(name: str, run: Callable[[], str]) -> bool:
    try:
        print(f"PASS {name}: {run()}", flush=True)
    except Skip as exc:
        print(f"SKIP {name}: {exc}", flush=True)
    except Warn as exc:
        print(f"WARN {name}: {exc}", flush=True)
    except (Fail, LipsyncError, OSError) as exc:
        print(f"FAIL {name}: {exc}", flush=True)
        return False
    return True


def _config(config: Config, args: argparse.Namespace) -> str:
    path = find_config_file(getattr(args, "config", None), os.environ)
    origin = str(path) if path else "built-in defaults (no config file)"
    return f"valid ({origin}); share {config.share.root}, engine {config.worker.engine}, " \
           f"language {config.general.language}"


def _share(config: Config) -> str:
    Share(Path(config.share.root)).prepare()  # raises ConfigError/ShareUnreachable with the reason
    return "folders present, all on one filesystem, writable (a test file was renamed through each)"


def _disk(config: Config) -> str:
    st = os.statvfs(config.share.root)
    free, pause = st.f_bavail * st.f_frsize, config.intake.pause_below_free_gb
    if pause and free < pause * 1e9:
        raise Fail(f"{free / 1e9:.1f} GB free, below intake.pause_below_free_gb = {pause:g}: intake is paused; "
                   "clear done/ or failed/ or add space")
    return f"{free / 1e9:.1f} GB free of {st.f_blocks * st.f_frsize / 1e9:.1f} GB (intake pauses below {pause:g} GB)"


def _run_tool(tool: str, *argv: str) -> str:
    from daemon.worker.media import process

    done = process.run([process.resolve(tool), *argv], 30, capture_stdout=True)
    if done.returncode != 0:
        raise Fail(f"`{tool} {' '.join(argv)}` exited {done.returncode}: {done.stderr_tail.strip()[-200:]}")
    return done.stdout.decode("utf-8", "replace")


def _tool(config: Config, name: str) -> str:
    tool = config.media.ffmpeg if name == "ffmpeg" else config.media.ffprobe
    first = _run_tool(tool, "-hide_banner", "-version").splitlines()[:1]
    from daemon.worker.media import process

    return f"{process.resolve(tool)}: {first[0] if first else 'version unknown'}"


def _codecs(config: Config) -> str:
    tool = config.media.ffmpeg
    found = {"encoders": _names(_run_tool(tool, "-hide_banner", "-encoders"), _CODEC_LINE),
             "decoders": _names(_run_tool(tool, "-hide_banner", "-decoders"), _CODEC_LINE),
             "filters": _names(_run_tool(tool, "-hide_banner", "-filters"), _FILTER_LINE)}
    wanted = {"encoders": ENCODERS, "decoders": DECODERS, "filters": FILTERS}
    missing = {kind: [n for n in names if n not in found[kind]] for kind, names in wanted.items()}
    if any(missing.values()):
        what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in missing.items() if names)
        raise Fail(f"{tool} lacks {what}; install a full ffmpeg build (Debian/Ubuntu: apt-get install ffmpeg)")
    return (f"encoders {', '.join(ENCODERS)}; decoders {', '.join(DECODERS)}; filters {', '.join(FILTERS)}: "
            "all present")


def _media_box(config: Config) -> str:
    """Which box media children get on this host (issue 20); an explicit media.sandbox that cannot
    work here fails, "auto" reports what it found."""
    from daemon.worker.media import box

    return box.describe(config.media.sandbox, config.media.ffmpeg)


def _names(listing: str, pattern: re.Pattern[str]) -> set[str]:
    return {m.group(1) for line in listing.splitlines() if (m := pattern.match(line))}


def _gpu(config: Config) -> str:
    engine = config.worker.engine
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no library, no driver, no device: all mean "no GPU"
        if engine == "wav2lip":
            raise Fail(f"no GPU visible through NVML ({type(exc).__name__}); worker.engine = wav2lip would run "
                       "on the CPU, many times slower than real time: fix the NVIDIA driver") from None
        raise Skip(f"no GPU visible through NVML; not needed: worker.engine = {engine} runs on the CPU "
                   "(wav2lip needs a GPU for speed)") from None
    try:
        lines, low = [], []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            lines.append(f"#{i} {name} {mem.free / 1e9:.1f} GB free of {mem.total / 1e9:.1f} GB")
            if mem.free < GPU_MIN_FREE:
                low.append(f"#{i}")
    finally:
        pynvml.nvmlShutdown()
    if not lines:
        raise Skip("NVML works but sees no GPU")
    if low and engine == "wav2lip":
        raise Fail(f"{'; '.join(lines)}: GPU {', '.join(low)} has less than {GPU_MIN_FREE / 1e9:g} GB free; "
                   "another process holds its memory")
    return "; ".join(lines)


def _checkpoint(config: Config, key: str, hook: str) -> str:
    path = getattr(config.engines.wav2lip, key)
    needed = config.worker.engine == "wav2lip" and key == "checkpoint"
    if not path:
        if needed:
            raise Fail(f"worker.engine = wav2lip but engines.wav2lip.{key} is empty: set it to the official "
                       "Wav2Lip checkpoint (.pth)")
        raise Skip(f"engines.wav2lip.{key} is empty")
    if not Path(path).is_file():
        raise Fail(f"engines.wav2lip.{key} = {path}: no such file")
    if importlib.util.find_spec("daemon.worker.engines.wav2lip") is None:
        raise Skip(f"{path} exists, but the wav2lip engine is not installed in this build; cannot load it")
    engine = importlib.import_module("daemon.worker.engines.wav2lip")
    check = getattr(engine, hook, None)
    if check is None:
        raise Skip(f"this wav2lip build has no {hook}() to load {path} with")
    ok, detail = check(path)
    if not ok:
        raise Fail(str(detail))
    return str(detail)


def _face_detector(config: Config) -> str:
    """wav2lip without S3FD runs on the offline detector's boxes through an unfitted calibration: say so."""
    w2l = config.engines.wav2lip
    in_use = config.worker.engine == "wav2lip" or bool(w2l.checkpoint)
    if in_use and not w2l.face_detector_checkpoint:
        raise Warn("engines.wav2lip.face_detector_checkpoint is empty: wav2lip's face boxes will come from the "
                   "offline detector through a calibration toward S3FD's geometry that was never fitted, so "
                   "lip-sync quality may suffer; supply s3fd.pth (~86 MB) and set the key")
    return _checkpoint(config, "face_detector_checkpoint", "check_detector")


def _robots(config: Config) -> list[object]:
    from daemon.sentinel.channels import build_outbox

    quiet = logging.getLogger("daemon.sentinel.channels")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its "no robot configured" warning is our SKIP line here
    try:
        outbox = build_outbox(config, config.general.host_name or socket.gethostname(), None)
    finally:
        quiet.setLevel(level)
    return [courier.robot for courier in outbox.couriers]


def _channels(config: Config) -> str:
    names = [getattr(r, "name", "?") for r in _robots(config)]
    if not names:
        raise Skip("no chat robot configured ([alerts.dingtalk] / wecom / feishu / webhook): alerts only go to "
                   "the watchdog log")
    return f"configured: {', '.join(names)} (use --send-test-alert to send each one a message)"


TEST_ALERT = {"en": ("lipsyncd test alert from {host}",
                     "Sent by `lipsyncd doctor --send-test-alert` on {host}: the {channel} channel works."),
              "zh": ("lipsyncd 测试告警（{host}）",
                     "由 {host} 上的 `lipsyncd doctor --send-test-alert` 发送：{channel} 通道工作正常。")}


def _send_test_alerts(config: Config) -> int:
    """One message per configured robot, sent now (no queue, no rate limit); returns how many failed."""
    from daemon.sentinel.channels import language

    host = config.general.host_name or socket.gethostname()
    title_t, text_t = TEST_ALERT.get(language(config), TEST_ALERT["en"])
    robots = _robots(config)
    if not robots:
        print("SKIP test alert: no chat robot configured", flush=True)
        return 0
    failed = 0
    for robot in robots:
        name = getattr(robot, "name", "?")
        outcome = robot.send(title_t.format(host=host), text_t.format(host=host, channel=name))  # type: ignore[attr-defined]
        if outcome.delivery.value == "sent":
            print(f"PASS test alert {name}: delivered", flush=True)
            continue
        failed += 1
        hint = " (this host's clock is off: fix NTP)" if outcome.clock_skew else ""
        print(f"FAIL test alert {name}: {outcome.delivery.value}, code {outcome.code}: {outcome.detail}{hint}",
              flush=True)
    return failed



# --- the process manager the watchdog restarts workers through (issue 14) ------------------------------
def _process_manager(config: Config, env: dict[str, str] | None = None) -> str:
    """supervisord: its socket answers XML-RPC; systemd: polkit lets the service user restart a worker."""
    import http.client
    import subprocess
    import xmlrpc.client

    from daemon.sentinel.supervision import expand
    from daemon.sentinel.supervisord import Supervisord

    env = dict(os.environ) if env is None else env
    cfg, kind = config.watchdog, config.watchdog.process_manager
    url = env.get("SUPERVISOR_SERVER_URL") or cfg.supervisord_url
    if kind == "auto":
        sock = url[len("unix://"):] if url.startswith("unix://") else ""
        kind = "supervisord" if env.get("SUPERVISOR_SERVER_URL") or (sock and os.path.exists(sock)) else \
            "systemd" if os.path.isdir("/run/systemd/system") else "none"
    if kind == "supervisord":
        try:
            state = Supervisord(url, cfg.supervisord_program, cfg.manager_timeout_s).proxy.supervisor.getState()
        except (OSError, xmlrpc.client.Error, http.client.HTTPException) as exc:
            raise Fail(f"supervisord at {url} does not answer: {exc}; start it, or point SUPERVISOR_SERVER_URL "
                       "/ watchdog.supervisord_url at its socket") from None
        return f"supervisord at {url} answers ({state.get('statename')})"
    if kind != "systemd":
        raise Skip(f"no process manager here (watchdog.process_manager = {cfg.process_manager})")
    if os.geteuid() != 0:
        raise Skip("run doctor as root to check that polkit lets the service user restart workers")
    unit, user = expand(cfg.systemd_unit, "gpu0"), _service_user()
    try:
        # a process of the service user itself (not a root wrapper around it) is the polkit subject
        with subprocess.Popen(["sleep", "30"], user=user, group=user) as probe:
            try:
                done = subprocess.run(["pkcheck", "--action-id", "org.freedesktop.systemd1.manage-units",
                                       "--process", str(probe.pid), "--detail", "unit", unit,
                                       "--detail", "verb", "restart"], capture_output=True, text=True, timeout=20)
            finally:
                probe.kill()
    except (OSError, KeyError, subprocess.SubprocessError) as exc:
        raise Fail(f"cannot ask polkit about user {user}: {exc}") from None
    if done.returncode != 0:
        raise Fail(f"polkit does not let {user} restart {unit} ({done.stderr.strip().splitlines()[-1:]}): install "
                   "systemd/50-lipsyncd.rules (or the .pkla for polkit < 0.106); see scripts/install.sh")
    return f"polkit lets {user} restart {unit}"


def _service_user() -> str:
    return os.environ.get("LIPSYNCD_SERVICE_USER", "lipsyncd")
