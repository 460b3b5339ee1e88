"""What the watchdog says to operators, in English and Chinese: one (title, body) pair per alert kind."""

from __future__ import annotations

from typing import Any

from daemon.sentinel.alerts.alert import Alert, Severity

# kind -> language -> (title, body); {host} is always available
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "stalled": {
        "en": ("Worker {worker} on {host} stalled",
               "No progress for {quiet} s in phase {phase} (limit {limit} s), job {job}. {action}"),
        "zh": ("{host} 上的工作进程 {worker} 卡住了",
               "阶段 {phase} 已 {quiet} 秒没有进展（上限 {limit} 秒），任务 {job}。{action}"),
    },
    "still_stalled": {
        "en": ("Worker {worker} on {host} still not healthy",
               "State {health} ({reason}) since {minutes} min."),
        "zh": ("{host} 上的工作进程 {worker} 仍未恢复", "状态 {health}（{reason}），已持续 {minutes} 分钟。"),
    },
    "recovered": {
        "en": ("Worker {worker} on {host} recovered", "It is {phase} again after {minutes} min."),
        "zh": ("{host} 上的工作进程 {worker} 已恢复", "{minutes} 分钟后恢复为 {phase} 状态。"),
    },
    "gave_up": {
        "en": ("Worker {worker} on {host} is down for good: needs a human",
               "{why}. The process manager stopped restarting it; look at its log, fix the cause, then "
               "start it again ({how})."),
        "zh": ("{host} 上的工作进程 {worker} 已停止重启，需要人工处理",
               "{why}。进程管理器已放弃重启；请查看日志、排除原因后手动启动（{how}）。"),
    },
    "restart_failed": {
        "en": ("Worker {worker} on {host} cannot be restarted: needs a human",
               "It is stalled ({reason}); the watchdog asked {manager} {attempts} times in a row to restart "
               "it and was refused each time: {error}. Fix that (see `lipsyncd doctor`), or restart it by "
               "hand ({how}); the watchdog keeps trying every {retry} s."),
        "zh": ("{host} 上的工作进程 {worker} 无法重启，需要人工处理",
               "它已卡住（{reason}）；看门狗已连续 {attempts} 次请求 {manager} 重启，均被拒绝：{error}。"
               "请排除该问题（见 `lipsyncd doctor`），或手动重启（{how}）；看门狗每 {retry} 秒重试一次。"),
    },
    "config_error": {
        "en": ("lipsyncd on {host}: configuration error",
               "configuration error: {detail}. Intake and workers do not start until it is fixed; the "
               "watchdog runs on what it could read. Fix the file, then restart lipsyncd.target (or the "
               "supervisord programs)."),
        "zh": ("{host} 上的 lipsyncd：配置错误",
               "配置错误：{detail}。修复前 intake 和工作进程不会启动；看门狗按可读取的部分运行。"
               "请修复该文件后重启 lipsyncd.target（或 supervisord 中的程序）。"),
    },
    "jobs_failed": {
        "en": ("{count} job(s) failed on {host}", "{lines}"),
        "zh": ("{host} 上有 {count} 个任务失败", "{lines}"),
    },
    "queue_waiting": {
        "en": ("Jobs waiting too long on {host}", "Job {job} has been queued for {minutes} min "
               "({queued} jobs in staging/). Are the workers running?"),
        "zh": ("{host} 上的任务排队过久", "任务 {job} 已排队 {minutes} 分钟（staging/ 中共 {queued} 个）。"
               "工作进程是否在运行？"),
    },
    "disk_low": {
        "en": ("Disk almost full on {host}", "Only {free_gb} GB free on the share (alert below {min_gb} GB). "
               "{intake} Clear done/ or failed/."),
        "zh": ("{host} 磁盘空间不足", "共享盘仅剩 {free_gb} GB（告警阈值 {min_gb} GB）。{intake}"
               "请清理 done/ 或 failed/。"),
    },
    "share_unreachable": {
        "en": ("Share unreachable from {host}", "{root} has not answered for {minutes} min ({detail})."),
        "zh": ("{host} 无法访问共享盘", "{root} 已 {minutes} 分钟没有响应（{detail}）。"),
    },
    "intake_down": {
        "en": ("Intake not running on {host}", "intake.json was last written {age} s ago ({detail}); "
               "new jobs are not being accepted."),
        "zh": ("{host} 上的接收进程未运行",
               "intake.json 最后更新于 {age} 秒前（{detail}），新任务不会被接收。"),
    },
    "intake_refusing": {
        "en": ("Intake refuses the share on {host}", "{detail}. New drops wait in inbox/ until it is fixed."),
        "zh": ("{host} 上的接收进程拒绝处理共享盘", "{detail}。修复前新任务会留在 inbox/ 中等待。"),
    },
    "gpu_lost": {
        "en": ("GPU problem on {host}", "{detail}"),
        "zh": ("{host} 的 GPU 出现问题", "{detail}"),
    },
    "gpu_memory_full": {
        "en": ("GPU {index} memory nearly full on {host}", "{used_gb} of {total_gb} GB in use ({pct}%)."),
        "zh": ("{host} 的 GPU {index} 显存将满", "已用 {used_gb} / {total_gb} GB（{pct}%）。"),
    },
    "channel_broken": {
        "en": ("Alert channel {channel} on {host} is failing", "{channel} answered {error}. {hint}"),
        "zh": ("{host} 的告警通道 {channel} 发送失败", "{channel} 返回 {error}。{hint}"),
    },
    # fragments for disk_low's {intake}: whether intake's disk guard has paused accepting drops
    "intake_paused_disk": {
        "en": ("", "Intake is paused: new drops wait in inbox/ until space is freed."),
        "zh": ("", "已暂停接收任务：新任务在 inbox/ 中等待，直到空间释放。"),
    },
    "intake_running": {
        "en": ("", "Intake still accepts drops (it pauses below intake.pause_below_free_gb)."),
        "zh": ("", "仍在接收任务（低于 intake.pause_below_free_gb 时暂停）。"),
    },
    "resolved": {
        "en": ("Resolved: {title}", "Cleared after {minutes} min."),
        "zh": ("已恢复：{title}", "{minutes} 分钟后恢复正常。"),
    },
}


class _Lenient(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def say(kind: str, language: str, **params: Any) -> tuple[str, str]:
    title, body = TEXTS[kind].get(language) or TEXTS[kind]["en"]
    values = _Lenient(params)
    return title.format_map(values), body.format_map(values)


def alert(kind: str, key: str, severity: Severity, language: str, now: float, **params: Any) -> Alert:
    title, body = say(kind, language, **params)
    return Alert(key, severity, title, body, raised_at=now)
