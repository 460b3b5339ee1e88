"""What a decoder of the presenter's video ending early means: within the container's overstatement of
its length, nothing; beyond it, the share or the file failing under us (EnvironmentFault), or a picture
that cannot be decoded or a cut-off file (JobRejected). The renderer's decoder and the face pass's
segments apply the same rule.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path

from daemon.core import messages
from daemon.core.errors import EnvironmentFault, JobRejected, ShareUnreachable, is_unreachable
from daemon.worker.media.plan import Plan
from daemon.worker.media.probe import MediaInfo

messages.register({
    "video_truncated": {
        "en": ("The video {name} ends early: only {got} of its {expected} frames could be decoded, "
               "so the file is probably cut off ({size}).",
               "Copy or export the video again (let the copy finish) and submit the job again."),
        "zh": ("视频 {name} 提前结束：{expected} 帧中只能解码 {got} 帧，文件可能不完整（{size}）。",
               "请重新复制或导出该视频（等待复制完成）后重新提交。"),
    },
})


def tolerance(plan: Plan) -> int:
    """Frames a decoder may fall short of the plan's count: container durations overstate by up to ~½ s."""
    return max(3, round(plan.fps / 2))


def cut_off(info: MediaInfo, reached: int, expected: int) -> typing.NoReturn:
    """A decoder of `info` ended at source frame `reached` of `expected`, beyond the tolerance: the
    share or the file failing under us (EnvironmentFault), else a picture that cannot be decoded or a
    cut-off file (JobRejected)."""
    _still_readable(info.path, info.size)  # a vanished share is not a cut-off file
    if reached == 0:  # not one picture: an unsupported codec or garbage, not a cut-off file
        codec = info.video.codec if info.video else "unknown"
        raise JobRejected("media_unreadable", name=info.path.name,
                          detail=f"its picture ({codec}) cannot be decoded by this appliance")
    raise JobRejected("video_truncated", name=info.path.name, got=reached, expected=expected,
                      size=f"{info.size / 1e6:.1f} MB")


def _still_readable(path: Path, size: int) -> None:
    """EnvironmentFault unless `path` still reads at its last byte with the size it was probed with.

    A decoder also ends early when the share under it dies (EIO, ENOTCONN...) or when the file is
    changed under us: neither is the producer's file being cut off, and neither may fail the job."""
    try:
        with open(path, "rb") as fh:
            now = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, now - 1))
            fh.read(1)
    except OSError as exc:
        if is_unreachable(exc):
            raise ShareUnreachable(f"the share is unreachable: {path.name} cannot be read "
                                   f"({exc.strerror})") from exc
        raise EnvironmentFault(f"{path.name} cannot be read any more: {exc.strerror}") from exc
    if size and now != size:
        raise EnvironmentFault(f"{path.name} changed size while the job ran ({size} → {now} bytes)")
