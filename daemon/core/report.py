"""What a finished job says about itself: report.json for machines, error.txt for producers.

Both are written inside the job folder before the folder is moved to done/ or failed/, so a job
never sits in failed/ without its reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from daemon.core import atomic, messages
from daemon.core.job import ERROR, REPORT

_HEADINGS = {
    "en": ("What went wrong", "What to do", "Job", "Files"),
    "zh": ("出了什么问题", "怎么办", "任务", "文件"),
}


def write_failure(job_dir: Path, *, job_id: str, code: str, params: dict[str, Any], language: str,
                  inputs: dict[str, str], attempts: int, timings: dict[str, float] | None = None,
                  batch: str = "", traceback: str | None = None, stats: dict[str, Any] | None = None) -> None:
    msg = messages.render(code, language, params)
    english = messages.render(code, "en", params)
    what, todo, job_h, files_h = _HEADINGS.get(language, _HEADINGS["en"])
    lines = [f"{what}:", f"  {msg.what}", "", f"{todo}:", f"  {msg.todo}", "",
             f"{job_h}: {job_id}"]
    if inputs:
        lines.append(f"{files_h}: " + ", ".join(f"{k} = {v}" for k, v in inputs.items()))
    if language != "en":  # operators and search engines read English; producers read their language first
        lines += ["", "---", f"What went wrong: {english.what}", f"What to do: {english.todo}"]
    atomic.write_text(job_dir / ERROR, "\n".join(lines) + "\n")
    report = _base(job_id, batch, "failed", inputs, attempts, timings, stats)
    report.update(code=code, message=msg.what, todo=msg.todo, message_en=english.what,
                  params={k: str(v) for k, v in params.items()})
    if traceback:
        report["traceback"] = traceback
    atomic.write_json(job_dir / REPORT, report)


def write_success(job_dir: Path, *, job_id: str, output: str, inputs: dict[str, str], attempts: int,
                  timings: dict[str, float], batch: str = "", stats: dict[str, Any] | None = None,
                  code: str = "ok", message: str = "") -> None:
    report = _base(job_id, batch, "done", inputs, attempts, timings, stats)
    report.update(code=code, output=output, message=message or "finished")
    atomic.write_json(job_dir / REPORT, report)


def _base(job_id: str, batch: str, state: str, inputs: dict[str, str], attempts: int,
          timings: dict[str, float] | None, stats: dict[str, Any] | None) -> dict[str, Any]:
    finished = dict(timings or {})
    finished.setdefault("finished_at", round(time.time(), 3))
    return {"job": job_id, "batch": batch, "state": state, "inputs": inputs, "attempts": attempts,
            "timings": finished, "stats": stats or {}}
