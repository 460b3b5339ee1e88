"""Folders in staging/ that are not jobs: no readable job.json. They go to failed/ with a reason.

Only the intake puts jobs into staging/, always with a complete job.json (one rename of a finished
folder). Anything else there — a human's partial copy, a foreign tool's folder, a job.json broken by a
fault — would kill every worker that claimed it, one after another. Such a folder is claimed like a
job (so exactly one worker handles it), then moved to failed/ with an error.txt an operator can act
on; its files are not touched. A folder still changing is left alone until it has been quiet for the
grace period (on the share's clock), so a copy in progress is not taken away half-way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from daemon.core import messages, report, state
from daemon.core.errors import ShareUnreachable, is_unreachable
from daemon.core.history import JobLog
from daemon.core.job import ERROR, REPORT, SPEC, Job, JobSpec
from daemon.core.state import JobState

log = logging.getLogger(__name__)

CODE = "not_a_job"

messages.register({
    CODE: {
        "en": ("The folder {folder} was found in staging/ but is not a job the appliance accepted: {problem}. "
               "It was probably copied there by hand or by another tool, or left half-copied.",
               "Nothing in it was changed. To process its files, drop them into inbox/ with a ticket; "
               "an operator may delete this folder from failed/ once it is no longer needed."),
        "zh": ("在 staging/ 中发现文件夹 {folder}，但它不是本系统接收的任务：{problem}。"
               "它可能是手工或其他工具复制进来的，或者没有复制完整。",
               "其中的文件没有被改动。如需处理这些文件，请把它们连同任务单放入 inbox/；"
               "不再需要时，管理员可以从 failed/ 中删除此文件夹。"),
    },
})


def spec_problem(job: Job) -> str | None:
    """Why the job's job.json cannot be used, in plain words; None when it is a readable spec."""
    try:
        JobSpec.from_json(_spec_json(job.path / SPEC))
        return None
    except FileNotFoundError:
        return f"it has no {SPEC}"
    except OSError as exc:
        if is_unreachable(exc):
            raise ShareUnreachable(f"the share is unreachable: cannot read {job.name}/{SPEC} "
                                   f"({exc.strerror})") from exc
        return f"its {SPEC} cannot be read ({exc.strerror})"
    except ValueError as exc:
        return f"its {SPEC} is not a valid job description ({exc})"
    except TypeError as exc:
        return f"its {SPEC} lacks required fields ({exc})"


def _spec_json(path: Path) -> dict[str, object]:
    with open(path, "rb") as fh:
        data = json.loads(fh.read().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    return data


def quiet_for(folder: Path, share_now: float) -> float:
    """Seconds since anything in `folder` (or the folder itself) last changed, by the share's clock."""
    newest = os.stat(folder).st_mtime
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except FileNotFoundError:
                continue
    return share_now - newest


def quarantine(job: Job, problem: str, language: str) -> Job | None:
    """Move a claimed non-job to failed/ with its reason; None when someone else moved it first."""
    params = {"folder": job.id, "problem": problem}
    if any((job.path / name).exists() for name in (ERROR, REPORT)):
        # files of that name came with the folder: never overwrite what someone else put there
        log.error("%s: not a job (%s); it has its own %s or %s, so the reason is only in job.log", job.id,
                  problem, ERROR, REPORT)
    else:
        report.write_failure(job.path, job_id=job.id, code=CODE, params=params, language=language,
                             inputs={}, attempts=job.attempt())
    try:
        moved = state.move(job, JobState.FAILED, f"not a job: {problem}")
    except state.JobGone:
        return None
    JobLog(job.id, moved.path, log).error("not a job (%s): moved to failed/ untouched", problem)
    return moved
