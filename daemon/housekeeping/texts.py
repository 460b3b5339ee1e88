"""What STATUS.html says, in English and Chinese, and how it writes durations and sizes."""

from __future__ import annotations

from typing import TypeGuard

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "lipsyncd status", "updated": "Updated {time}; this page reloads every {n} s.",
        "stale": "This page is {age} old: the status writer (intake) may be stopped.",
        "queued": "Queued", "running": "Running", "done": "Done", "failed": "Failed", "inbox": "In inbox",
        "oldest": "oldest waits {d}", "none_waiting": "none waiting",
        "intake": "Intake", "intake_ok": "accepting drops", "intake_paused": "PAUSED: {reason}",
        "intake_unknown": "no news from intake", "paused": "paused",
        "disk": "Disk free", "disk_of": "{free} of {total}",
        "h_running": "Running now", "h_queue": "Queue", "h_workers": "Workers", "h_gpus": "GPUs",
        "h_done": "Recently finished", "h_failed": "Recently failed", "h_alerts": "Alert channels",
        "job": "Job", "batch": "Batch", "worker": "Worker", "progress": "Progress", "chunk": "Chunk",
        "fps": "fps", "eta": "Time left", "elapsed": "Running for", "waiting": "Waiting", "attempt": "Attempt",
        "phase": "State", "heartbeat": "Last sign of life", "output": "Result", "finished": "Finished",
        "took": "Took", "reason": "What went wrong", "todo": "What to do", "channel": "Channel",
        "sent": "Sent", "failed_n": "Failed", "last_error": "Last error", "memory": "Memory", "host": "Host",
        "empty_running": "Nothing is being rendered.", "empty_queue": "The queue is empty.",
        "empty_workers": "No worker has reported yet.", "empty_done": "No finished jobs yet.",
        "empty_failed": "No failed jobs.", "empty_alerts": "No chat robot configured.",
        "ago": "{d} ago", "ch_ok": "ok", "ch_retrying": "retrying", "ch_broken": "BROKEN",
        "help": "Drop media and a .toml ticket into inbox/. Results appear in done/; if a job fails, "
                "failed/<job>/error.txt explains why and what to do.",
        "ph_loading": "loading", "ph_idle": "idle", "ph_working": "working", "ph_finalizing": "finishing",
        "ph_stopping": "stopping", "ph_render": "rendering",
        "ram": "Memory (RAM)", "picture": "Preview", "shot_done_alt": "mouth close-ups from the result of {job}",
        "shot_failed_alt": "the frames of {job} that were analysed", "shot_failed": "the frames we looked at",
    },
    "zh": {
        "title": "lipsyncd 状态", "updated": "更新于 {time}；本页每 {n} 秒自动刷新。",
        "stale": "本页已 {age} 未更新：状态写入进程（intake）可能已停止。",
        "queued": "排队中", "running": "处理中", "done": "已完成", "failed": "失败", "inbox": "收件箱",
        "oldest": "最久已等 {d}", "none_waiting": "无等待",
        "intake": "接收", "intake_ok": "正在接收任务", "intake_paused": "已暂停：{reason}",
        "intake_unknown": "接收进程无消息", "paused": "已暂停", "disk": "磁盘剩余", "disk_of": "{free} / {total}",
        "h_running": "正在处理", "h_queue": "队列", "h_workers": "工作进程", "h_gpus": "GPU",
        "h_done": "最近完成", "h_failed": "最近失败", "h_alerts": "告警通道",
        "job": "任务", "batch": "批次", "worker": "工作进程", "progress": "进度", "chunk": "分段",
        "fps": "帧/秒", "eta": "剩余时间", "elapsed": "已运行", "waiting": "已等待", "attempt": "第几次",
        "phase": "状态", "heartbeat": "最近心跳", "output": "结果", "finished": "完成时间",
        "took": "耗时", "reason": "出了什么问题", "todo": "怎么办", "channel": "通道",
        "sent": "已发送", "failed_n": "失败", "last_error": "最近错误", "memory": "显存", "host": "主机",
        "empty_running": "当前没有正在处理的任务。", "empty_queue": "队列为空。",
        "empty_workers": "还没有工作进程上报。", "empty_done": "还没有完成的任务。",
        "empty_failed": "没有失败的任务。", "empty_alerts": "未配置聊天机器人。",
        "ago": "{d}前", "ch_ok": "正常", "ch_retrying": "重试中", "ch_broken": "配置错误",
        "help": "把媒体文件和 .toml 任务单放入 inbox/。结果出现在 done/；任务失败时，"
                "failed/<任务>/error.txt 会说明原因和处理办法。",
        "ph_loading": "加载中", "ph_idle": "空闲", "ph_working": "工作中", "ph_finalizing": "收尾中",
        "ph_stopping": "停止中", "ph_render": "渲染中",
        "ram": "内存", "picture": "预览", "shot_done_alt": "{job} 结果中的口型特写",
        "shot_failed_alt": "{job} 被分析的画面", "shot_failed": "我们分析过的画面",
    },
}

_UNITS = {"en": ("s", "min", "h", "d"), "zh": ("秒", "分", "小时", "天")}


def say(language: str, key: str, **params: object) -> str:
    table = TEXTS.get(language, TEXTS["en"])
    text = table.get(key, TEXTS["en"].get(key, key))
    return text.format(**params) if params else text


def number(value: object) -> TypeGuard[float]:
    # the values come from files other roles wrote; a bad one shows as "–" instead of stopping the page
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def duration(seconds: float | None, language: str) -> str:
    """A short human duration: 45 s, 12 min, 3 h 05 min, 2 d 4 h (units in the page language)."""
    if seconds is None or not number(seconds) or abs(seconds) > 1e10:
        return "–"
    s, mi, h, d = _UNITS.get(language, _UNITS["en"])
    sep = "" if language == "zh" else " "
    total = max(0, int(round(seconds)))
    if total < 60:
        return f"{total}{sep}{s}"
    if total < 3600:
        return f"{total // 60}{sep}{mi}"
    if total < 86400:
        return f"{total // 3600}{sep}{h} {total % 3600 // 60:02d}{sep}{mi}"
    return f"{total // 86400}{sep}{d} {total % 86400 // 3600}{sep}{h}"


def size(n: float | None) -> str:
    if n is None or not number(n):
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
