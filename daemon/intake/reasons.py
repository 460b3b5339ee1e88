"""The producer-facing messages only intake gives (registered into core.messages at import)."""

from __future__ import annotations

from daemon.core import messages

messages.register({
    "media_incomplete": {
        "en": ("The file {name} looks cut off: {why}. It stayed like this for {minutes} minutes, so the copy "
               "probably stopped early.",
               "Copy {name} into the inbox again (all of it), then drop the ticket again. If the file plays "
               "on your computer, export it again: the export itself may have been interrupted."),
        "zh": ("文件 {name} 看起来不完整：{why}。它已保持这样 {minutes} 分钟，复制可能中途停止了。",
               "请重新完整复制 {name} 到 inbox，然后重新放入任务单。如果该文件在您的电脑上能播放，"
               "请重新导出：导出过程本身可能被中断了。"),
    },
    "name_ambiguous": {
        "en": ("The job ticket {ticket} names '{name}', and the inbox holds several files with that name "
               "written in different Unicode forms: {names}.",
               "Delete the extra copies so only one file has that name, then drop the ticket again."),
        "zh": ("任务单 {ticket} 引用了 '{name}'，而 inbox 中有多个仅 Unicode 编码形式不同的同名文件：{names}。",
               "请删除多余的副本，只保留一个同名文件，然后重新放入任务单。"),
    },
    "unclaimed": {
        "en": ("No job ticket named the file {name} for {minutes} minutes, so it was moved out of the inbox "
               "(nothing was deleted).",
               "To use it, move failed/{job}/inputs/{name} back into inbox/ and drop a ticket naming it; "
               "otherwise delete this folder."),
        "zh": ("{minutes} 分钟内没有任何任务单引用文件 {name}，因此已将其移出 inbox（没有删除任何内容）。",
               "如需使用，请把 failed/{job}/inputs/{name} 移回 inbox/，再放入引用它的任务单；否则可删除此文件夹。"),
    },
})
