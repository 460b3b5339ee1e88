"""The configuration: one frozen dataclass per config.toml section, loaded and validated once at start.

Precedence, lowest first: defaults here, the TOML file, `LIPSYNCD_<SECTION>_<KEY>` environment
variables, then `--root`/`LIPSYNCD_ROOT`. Every key is documented in the shipped config.toml.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from daemon.core import tomlpos
from daemon.core.errors import ConfigError
from daemon.core.settings import build, setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ENGINES = ("warp", "wav2lip", "copy")  # the one list of engine names (daemon/worker/engines/base.py: adding one)
DEFAULT_PATHS = (Path("/etc/lipsyncd/config.toml"),)


@dataclass(frozen=True)
class ShareConfig:
    root: str = setting("/srv/lipsyncd")
    # a missing or unmounted root (a late NFS/SMB mount): intake/workers wait this long, then exit 70
    mount_wait_s: float = setting(300.0, min=0, max=86400)


@dataclass(frozen=True)
class GeneralConfig:
    language: str = setting("en", choices=("en", "zh"))
    log_level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    host_name: str = setting("")  # empty: the machine's host name
    # this host's errors.log and alerts.jsonl (in .lipsyncd/logs/<host>/) rotate at this size...
    log_max_mb: float = setting(10.0, min=0.01, max=10_000)
    log_keep: int = setting(5, min=0, max=100)  # ...keeping this many old files (name.1 newest)


@dataclass(frozen=True)
class IntakeConfig:
    scan_interval_s: float = setting(2.0, min=0.05, max=3600)
    settle_s: float = setting(5.0, min=0, max=86400)
    settle_scans: int = setting(2, min=2, max=100)
    orphan_timeout_min: float = setting(60.0, min=0.01, max=10080)
    # a named file whose header says it is cut off waits this long unchanged before failing as incomplete
    incomplete_grace_s: float = setting(300.0, min=0, max=86400)
    max_ticket_bytes: int = setting(65536, min=64, max=10_485_760)
    max_files_per_ticket: int = setting(64, min=2, max=10_000)
    max_file_mb: int = setting(20480, min=1)
    duplicate_policy: str = setting("process", choices=("process", "skip", "fail"))
    allowed_engines: tuple[str, ...] = setting(list(ENGINES), choices=ENGINES)
    local_events: bool = setting(True)
    # disk guard: stop accepting drops below this much free space on the share, resume above the other
    pause_below_free_gb: float = setting(10.0, min=0)
    resume_above_free_gb: float = setting(12.0, min=0)


@dataclass(frozen=True)
class WorkerConfig:
    engine: str = setting("warp", choices=ENGINES)
    max_attempts: int = setting(3, min=1, max=100)
    lease_s: float = setting(120.0, min=1, max=86400)
    poll_interval_s: float = setting(1.0, min=0.05, max=3600)
    gpus: str = setting("all")


@dataclass(frozen=True)
class MediaConfig:
    ffmpeg: str = setting("ffmpeg")
    ffprobe: str = setting("ffprobe")
    probe_timeout_s: float = setting(60.0, min=1, max=3600)
    max_duration_min: float = setting(60.0, min=0.01, max=1440)
    timeout_factor: float = setting(20.0, min=1, max=1000)
    # preflight bounds: anything outside is rejected before a decoder starts
    min_audio_s: float = setting(0.3, min=0.05, max=60)
    max_file_mb: int = setting(20480, min=1)
    max_dimension: int = setting(4096, min=64, max=16384)
    min_dimension: int = setting(32, min=2, max=4096)
    max_fps: float = setting(240.0, min=1, max=1000)
    max_streams: int = setting(16, min=1, max=1000)
    video_formats: tuple[str, ...] = setting(["mov", "matroska", "avi"])
    audio_formats: tuple[str, ...] = setting(["wav", "mp3", "aac", "flac", "ogg", "mov", "matroska"])
    # output: frame rate when the engine does not fix one (0 = the source's; VFR sources get vfr_fps)
    fps: float = setting(0.0, min=0, max=120)
    vfr_fps: float = setting(25.0, min=1, max=120)
    max_height: int = setting(0, min=0, max=8192)  # 0 = keep; a job's options.max_height may lower it
    chunk_frames: int = setting(250, min=8, max=10000)  # resume granularity (one segment per chunk)
    batch_frames: int = setting(64, min=1, max=1000)  # frames per batch (decode, engine, encode)
    x264_preset: str = setting("veryfast", choices=("ultrafast", "superfast", "veryfast", "faster",
                                                    "fast", "medium", "slow"))
    crf: int = setting(20, min=0, max=51)
    audio_bitrate_k: int = setting(128, min=32, max=512)
    pipe_bytes: int = setting(1 << 20, min=65536, max=1 << 24)
    face_every: int = setting(5, min=1, max=100)  # detect every N frames, interpolate between
    face_max_side: int = setting(320, min=96, max=2048)  # detection runs on frames scaled to this
    face_threads: int = setting(0, min=0, max=64)  # parallel face-pass segments; 0 = half the CPUs, <= 8
    face_skip_nonref: bool = setting(True)  # face-pass decoders skip non-reference B-frames (decoder.py)
    # x264 children encoding consecutive chunks side by side, and threads each (0 = from the core count)
    encoders: int = setting(0, min=0, max=32)
    encoder_threads: int = setting(0, min=0, max=128)
    decoders: int = setting(0, min=0, max=8)  # decoder children on alternate chunks; 0 = from the core count
    tail_pieces: int = setting(0, min=0, max=32)  # the last chunk cut in this many; 0 = one per encoder
    ramp_threads: bool = setting(True)  # the last whole chunks' children get more threads (cores.py)
    loop: str = setting("pingpong", choices=("pingpong", "wrap"))  # video shorter than audio
    # the box media children run in (worker/media/box.py); 0 MB = derived from the picture size
    sandbox: str = setting("auto", choices=("auto", "bwrap", "unshare", "limits"))
    child_memory_mb: int = setting(0, min=0, max=1 << 20)


@dataclass(frozen=True)
class WarpEngineConfig:
    strength: float = setting(1.0, min=0, max=3)


@dataclass(frozen=True)
class Wav2LipEngineConfig:
    checkpoint: str = setting("")
    face_detector_checkpoint: str = setting("")
    batch_size: int = setting(128, min=1, max=4096)
    precision: str = setting("fp16", choices=("fp16", "bf16", "fp32"))  # fp32: strict reference, no TF32
    composite: str = setting("feather", choices=("feather", "paste"))
    mask_top: float = setting(0.45, min=0.0, max=1.0)  # feather: blend starts this far down the box
    mask_feather: float = setting(0.2, min=0.01, max=1.0)  # feather: ramp width, fraction of the box
    pads: tuple[int, ...] = setting([0, 10, 0, 0], min=0, max=10000)  # top, bottom, left, right (px)
    smooth_window: int = setting(5, min=1, max=100)  # 1 = upstream's --nosmooth
    hold_frames: int = setting(12, min=0, max=100000)  # keep the last box through short detection gaps
    detect_height: int = setting(480, min=180, max=4320)
    detect_batch_size: int = setting(16, min=1, max=1024)

    def validate(self) -> None:
        if len(self.pads) != 4:
            raise ConfigError(f"engines.wav2lip.pads = {list(self.pads)}: must be 4 numbers "
                              "(top, bottom, left, right)")


@dataclass(frozen=True)
class EnginesConfig:
    warp: WarpEngineConfig = field(default_factory=WarpEngineConfig)
    wav2lip: Wav2LipEngineConfig = field(default_factory=Wav2LipEngineConfig)


@dataclass(frozen=True)
class WatchdogConfig:
    interval_s: float = setting(5.0, min=0.05, max=3600)
    process_manager: str = setting("auto", choices=("auto", "up", "supervisord", "systemd", "none"))
    # stall limits per heartbeat phase: seconds without a sign of life before a restart
    loading_limit_s: float = setting(600.0, min=0.1, max=86400)
    idle_limit_s: float = setting(300.0, min=0.1, max=86400)
    chunk_limit_s: float = setting(300.0, min=0.1, max=86400)
    finalizing_limit_s: float = setting(600.0, min=0.1, max=86400)
    stopping_limit_s: float = setting(300.0, min=0.1, max=86400)
    # restart loop: this many restarts by the watchdog within the window → "gave up, needs a human"
    max_restarts: int = setting(3, min=1, max=100)
    restart_window_min: float = setting(30.0, min=0.01, max=10080)
    # a restart the manager refused: ask again after restart_retry_s, doubling up to restart_retry_max_s;
    # after restart_failures_alert refusals in a row, alert "needs a human" with the manager's error
    restart_retry_s: float = setting(5.0, min=0.1, max=3600)
    restart_retry_max_s: float = setting(120.0, min=0.1, max=86400)
    restart_failures_alert: int = setting(3, min=1, max=100)
    # process managers: where to reach them and how a worker name (e.g. gpu0, n = 0) maps to theirs
    supervisord_url: str = setting("unix:///run/lipsyncd/supervisor.sock")
    supervisord_program: str = setting("lipsyncd-worker:lipsyncd-worker-{n}")
    systemctl: str = setting("systemctl")
    systemd_unit: str = setting("lipsyncd-worker@{n}.service")
    manager_timeout_s: float = setting(10.0, min=0.1, max=600)
    # appliance checks
    share_timeout_s: float = setting(20.0, min=0.1, max=3600)
    share_unreachable_min: float = setting(3.0, min=0, max=1440)
    queue_wait_min: float = setting(120.0, min=0.01, max=100_000)
    disk_free_min_gb: float = setting(20.0, min=0)
    intake_stale_s: float = setting(120.0, min=1, max=86400)
    gpu_memory_full_pct: float = setting(97.0, min=1, max=100)
    gpu_check: bool = setting(True)
    failed_window_s: float = setting(60.0, min=0, max=86400)
    textfile_dir: str = setting("")  # node_exporter textfile collector folder; empty: off


@dataclass(frozen=True)
class DingTalkConfig:
    webhook: str = setting("", secret=True)  # https://oapi.dingtalk.com/robot/send?access_token=...
    secret: str = setting("", secret=True)  # signed mode; empty: keyword or IP mode
    keyword: str = setting("")  # keyword mode: put into every message
    per_minute: int = setting(15, min=1, max=18)  # the robot allows 20/min, then blocks for 10 min


@dataclass(frozen=True)
class WeComConfig:
    webhook: str = setting("", secret=True)  # https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...
    msgtype: str = setting("markdown", choices=("markdown", "text"))
    per_minute: int = setting(15, min=1, max=18)


@dataclass(frozen=True)
class FeishuConfig:
    webhook: str = setting("", secret=True)  # https://open.feishu.cn/open-apis/bot/v2/hook/...
    secret: str = setting("", secret=True)
    keyword: str = setting("")
    per_minute: int = setting(60, min=1, max=95)  # the bot allows 100/min and 5/s


@dataclass(frozen=True)
class WebhookConfig:
    url: str = setting("", secret=True)  # generic JSON POST {title, text, severity, key, host, ...}
    per_minute: int = setting(60, min=1, max=600)


@dataclass(frozen=True)
class AlertsConfig:
    language: str = setting("", choices=("", "en", "zh"))  # empty: general.language
    secrets_file: str = setting("")  # TOML with [dingtalk] webhook/secret, [feishu] ..., fills empty keys
    timeout_s: float = setting(10.0, min=0.5, max=120)
    renotify_min: float = setting(60.0, min=0, max=10080)
    outbox_dir: str = setting("")  # empty: <root>/.lipsyncd/outbox
    dingtalk: DingTalkConfig = field(default_factory=DingTalkConfig)
    wecom: WeComConfig = field(default_factory=WeComConfig)
    feishu: FeishuConfig = field(default_factory=FeishuConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


@dataclass(frozen=True)
class StatusConfig:
    interval_s: float = setting(5.0, min=0.5, max=3600)
    recent_jobs: int = setting(20, min=1, max=500)


@dataclass(frozen=True)
class RetentionConfig:
    done_days: float = setting(30.0, min=0)
    failed_days: float = setting(90.0, min=0)
    temp_hours: float = setting(24.0, min=0.01, max=8760)
    facecache_max_gb: float = setting(5.0, min=0.001)
    interval_min: float = setting(10.0, min=0.01, max=1440)


@dataclass(frozen=True)
class Config:
    share: ShareConfig = field(default_factory=ShareConfig)
    general: GeneralConfig = field(default_factory=GeneralConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    engines: EnginesConfig = field(default_factory=EnginesConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    @property
    def root(self) -> Path:
        return Path(self.share.root)


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> Path | None:
    """--config, else LIPSYNCD_CONFIG, else the first default path that exists, else None (defaults)."""
    chosen = explicit or env.get("LIPSYNCD_CONFIG")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (from "
                              f"{'--config' if explicit else 'LIPSYNCD_CONFIG'})")
        return path
    return next((p for p in DEFAULT_PATHS if p.is_file()), None)


def read_toml(path: Path) -> dict[str, object]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        data: dict[str, object] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        reason, line, column = tomlpos.locate(str(exc), text)
        raise ConfigError(f"{path}: TOML syntax error at line {line}, column {column}: {reason}") from None


def load_config(explicit_path: str | None = None, root: str | None = None,
                env: Mapping[str, str] | None = None) -> Config:
    """Load, override and validate the whole configuration; raises ConfigError naming the key."""
    env = os.environ if env is None else env
    path = find_config_file(explicit_path, env)
    data = read_toml(path) if path else {}
    origin = str(path) if path else "defaults"
    config = build(Config, data, env, (), origin)
    override = root or env.get("LIPSYNCD_ROOT")
    if override:
        config = replace(config, share=replace(config.share, root=override))
    if not Path(config.share.root).is_absolute():
        config = replace(config, share=replace(config.share, root=os.path.abspath(config.share.root)))
    return config
