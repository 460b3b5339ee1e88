"""Plain-language messages for producers, in English and Chinese, keyed by rejection code.

Each entry is (what went wrong, what to do). Modules that raise their own codes add them with
`register()` at import time, so the catalog grows with the code that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Message:
    what: str
    todo: str


# code -> language -> (what, todo)
_CATALOG: dict[str, dict[str, tuple[str, str]]] = {
    "ticket_syntax": {
        "en": ("The job ticket {ticket} is not valid TOML: {detail}.",
               "Fix the ticket (line {line}, column {column}) and drop it into inbox/ again."),
        "zh": ("任务单 {ticket} 不是有效的 TOML：{detail}。",
               "请修改任务单（第 {line} 行第 {column} 列）后重新放入 inbox/。"),
    },
    "ticket_encoding": {
        "en": ("The job ticket {ticket} is not readable text (tried UTF-8, UTF-16 and GB18030).",
               "Save the ticket as UTF-8 text (in Notepad: Save as → Encoding: UTF-8) and drop it again."),
        "zh": ("任务单 {ticket} 无法按文本读取（已尝试 UTF-8、UTF-16、GB18030）。",
               "请将任务单另存为 UTF-8 编码的文本后重新放入。"),
    },
    "ticket_empty": {
        "en": ("The job ticket {ticket} is empty.",
               "Write at least `audio = \"speech.wav\"` and `video = \"presenter.mp4\"` into it."),
        "zh": ("任务单 {ticket} 是空的。",
               "请至少写入 audio = \"speech.wav\" 和 video = \"presenter.mp4\"。"),
    },
    "ticket_too_large": {
        "en": ("The job ticket {ticket} is {size} bytes; tickets may be at most {limit} bytes.",
               "A ticket only names files; make sure you dropped the right file as the .toml."),
        "zh": ("任务单 {ticket} 有 {size} 字节，超过上限 {limit} 字节。",
               "任务单只需列出文件名，请确认放入的是正确的 .toml 文件。"),
    },
    "ticket_unknown_key": {
        "en": ("The job ticket {ticket} has an unknown setting '{key}'{hint}.",
               "Allowed settings: {allowed}. Remove or correct it and drop the ticket again."),
        "zh": ("任务单 {ticket} 中有未知的设置项 '{key}'{hint}。",
               "允许的设置项：{allowed}。请删除或改正后重新放入。"),
    },
    "ticket_bad_value": {
        "en": ("In the job ticket {ticket}, '{key}' must be {expected}, but it is {got}.",
               "Correct '{key}' and drop the ticket again."),
        "zh": ("任务单 {ticket} 中 '{key}' 应为 {expected}，实际是 {got}。",
               "请改正 '{key}' 后重新放入。"),
    },
    "ticket_no_media": {
        "en": ("The job ticket {ticket} does not say which files to use: {detail}.",
               "Name one `audio` and one `video` (or `audios = [...]` / `videos = [...]` for a batch)."),
        "zh": ("任务单 {ticket} 没有说明要使用哪些文件：{detail}。",
               "请写明一个 audio 和一个 video（批量时可用 audios = [...] 或 videos = [...]）。"),
    },
    "ticket_bad_name": {
        "en": ("The job ticket {ticket} names '{name}', which {why}.",
               "Name only files that sit next to the ticket, by their plain file name."),
        "zh": ("任务单 {ticket} 引用了 '{name}'，该名称{why}。",
               "只能引用与任务单放在同一处的文件，直接写文件名即可。"),
    },
    "ticket_engine_not_allowed": {
        "en": ("The job ticket {ticket} asks for engine '{engine}', which this appliance does not allow.",
               "Use one of: {allowed}, or leave `engine` out to use the default."),
        "zh": ("任务单 {ticket} 要求使用引擎 '{engine}'，本设备不允许。",
               "可用的引擎：{allowed}；或不写 engine 以使用默认引擎。"),
    },
    "too_many_files": {
        "en": ("The job ticket {ticket} names {count} files; at most {limit} are allowed in one ticket.",
               "Split the batch into several tickets."),
        "zh": ("任务单 {ticket} 引用了 {count} 个文件，单个任务单最多 {limit} 个。",
               "请拆分成多个任务单。"),
    },
    "file_too_large": {
        "en": ("The file {name} is {size}; the limit is {limit}.",
               "Export a shorter or more compressed version and drop the job again."),
        "zh": ("文件 {name} 大小为 {size}，超过上限 {limit}。",
               "请导出更短或压缩率更高的版本后重新提交。"),
    },
    "file_empty": {
        "en": ("The file {name} is empty (0 bytes).",
               "The copy probably failed; copy the file again, then the ticket."),
        "zh": ("文件 {name} 是空的（0 字节）。",
               "可能是复制失败，请重新复制该文件，再放入任务单。"),
    },
    "file_symlink": {
        "en": ("{name} is a link, not a file; links are not accepted.",
               "Copy the real file into the inbox instead of a link or shortcut."),
        "zh": ("{name} 是一个链接而不是文件，不接受链接。",
               "请把真实文件复制到 inbox，而不是链接或快捷方式。"),
    },
    "files_missing": {
        "en": ("The job ticket {ticket} names files that never arrived within {minutes} minutes: {missing}.",
               "Copy the missing files into the inbox first, then drop the ticket again."),
        "zh": ("任务单 {ticket} 引用的文件在 {minutes} 分钟内没有到齐：{missing}。",
               "请先复制缺少的文件，再重新放入任务单。"),
    },
    "folder_two_tickets": {
        "en": ("The job folder {folder} holds {count} tickets ({tickets}); a job folder holds exactly one.",
               "Put each ticket in its own folder, or list all files in one ticket."),
        "zh": ("任务文件夹 {folder} 中有 {count} 个任务单（{tickets}），每个文件夹只能有一个。",
               "请每个任务单放在单独的文件夹中，或把所有文件写进一个任务单。"),
    },
    "duplicate": {
        "en": ("This job is identical to job {original}, which was already accepted.",
               "The earlier result is in done/{original}/. Change the files or the ticket to run it again."),
        "zh": ("此任务与已接收的任务 {original} 完全相同。",
               "之前的结果在 done/{original}/ 中。如需重新生成，请修改文件或任务单。"),
    },
    "worker_died": {
        "en": ("The worker stopped unexpectedly {count} times while working on this job (it was not "
               "restarted for a stall; the reason is in the worker's log).",
               "Ask the operator to look at the worker's log. If other jobs finish normally on the same "
               "worker, this input may be what triggers the fault: check that it plays correctly."),
        "zh": ("处理此任务时工作进程意外停止了 {count} 次（不是因为没有进展而被重启；原因见工作进程日志）。",
               "请联系管理员查看工作进程日志。如果同一工作进程上的其他任务都能正常完成，"
               "可能是此输入触发了故障：请确认它能正常播放。"),
    },
    "input_vanished": {
        "en": ("The file {name} disappeared while the job was being accepted.",
               "Copy the file again, then drop the ticket again."),
        "zh": ("接收任务时文件 {name} 消失了。",
               "请重新复制该文件，再放入任务单。"),
    },
    "internal_error": {
        "en": ("The appliance hit an internal error while processing this job: {detail}.",
               "This is not your fault. The operator has been alerted; use `lipsyncd retry` later."),
        "zh": ("处理此任务时设备出现内部错误：{detail}。",
               "这不是您的问题，已通知管理员，稍后可重试。"),
    },
    "engine_unavailable": {
        "en": ("This appliance cannot run the engine '{engine}' right now: {detail}.",
               "Leave `engine` out of the ticket to use the default engine, or ask the operator."),
        "zh": ("本设备当前无法运行引擎 '{engine}'：{detail}。",
               "请在任务单中去掉 engine 以使用默认引擎，或联系管理员。"),
    },
    "no_face": {
        "en": ("No face was found in {name}: the lip-sync needs the presenter's face, seen from the front, "
               "in the picture (preview.jpg shows the frames that were analysed).",
               "Use a video or photo where the face is clearly visible, well lit and not too small, and drop "
               "the job again."),
        "zh": ("在 {name} 中没有找到人脸：口型同步需要画面中有正面的主讲人面部（preview.jpg 显示了分析过的画面）。",
               "请换用面部清晰可见、光线充足且不过小的视频或照片，然后重新提交。"),
    },
    "media_invalid": {
        "en": ("The file {name} cannot be used: {detail}.",
               "Re-export the file (H.264/AAC MP4 or WAV works everywhere) and drop the job again."),
        "zh": ("文件 {name} 无法使用：{detail}。",
               "请重新导出该文件（H.264/AAC 的 MP4 或 WAV 最通用）后重新提交。"),
    },
}


def register(entries: dict[str, dict[str, tuple[str, str]]]) -> None:
    """Add codes to the catalog; a code may be registered once, with both languages."""
    for code, langs in entries.items():
        if code in _CATALOG:
            raise ValueError(f"message code {code!r} registered twice")
        missing = set(LANGUAGES) - set(langs)
        if missing:
            raise ValueError(f"message code {code!r} lacks languages {sorted(missing)}")
        _CATALOG[code] = langs


def known(code: str) -> bool:
    return code in _CATALOG


class _Lenient(dict):  # type: ignore[type-arg]
    """Format mapping that leaves unknown fields visible instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(code: str, language: str, params: dict[str, Any]) -> Message:
    """The message for `code` in `language` (falls back to English, then to the code itself)."""
    langs = _CATALOG.get(code)
    if langs is None:
        detail = params.get("detail", "")
        return Message(f"{code}: {detail}".strip(": "), "Ask the operator.")
    what, todo = langs.get(language) or langs["en"]
    values = _Lenient({k: v for k, v in params.items()})
    return Message(what.format_map(values), todo.format_map(values))
