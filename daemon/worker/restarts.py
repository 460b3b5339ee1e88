"""How an attempt ended when its worker died: a crash, or a restart the watchdog ordered for a stall.

The two are counted apart (in attempt.json: `attempt` counts attempts, `stalls` the watchdog's
restarts), because they mean different things: a worker killed for making no progress says the
machine was too slow or stuck — not that the input is bad — and its job fails, if at all, with that
reason. The watchdog writes a `watchdog_restart` event into the job's history.jsonl before it asks for
the restart; an event after the attempt's claim is the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.core import atomic, history, messages
from daemon.core.job import ATTEMPT, Job

STALLED = "worker_stalled"

messages.register({
    STALLED: {
        "en": ("The worker was restarted {count} times because it made no progress on this job for {quiet} s "
               "(the limit is {limit} s). The input is not known to be at fault: the machine may be "
               "overloaded or stuck.",
               "Ask the operator: the machine may be overloaded (check its load) or its limit "
               "(watchdog.chunk_limit_s) too short for this job. Then retry the job."),
        "zh": ("此任务的处理进程在 {quiet} 秒内没有进展（上限 {limit} 秒），已被重启 {count} 次。"
               "没有证据表明输入文件有问题：机器可能负载过高或卡住了。",
               "请联系管理员：机器可能负载过高（请检查负载），或上限（watchdog.chunk_limit_s）对此任务太短。"
               "然后重试此任务。"),
    },
})


@dataclass(frozen=True)
class StallRestart:
    """The watchdog's order that ended the attempt: how long the worker had been quiet, and its limit."""

    quiet_s: float
    limit_s: float


def ended_by_watchdog(job: Job) -> StallRestart | None:
    """The watchdog's restart order after this attempt's claim, if there is one."""
    order = None
    for event in history.read(job.path):
        if event.get("event") == "moved" and event.get("to") == "processing":
            order = None  # a new claim: earlier orders were about earlier attempts
        elif event.get("event") == "watchdog_restart":
            order = StallRestart(_number(event.get("quiet_s")), _number(event.get("limit_s")))
        elif event.get("event") == "watchdog_restart_refused":
            order = None  # the manager refused (or there is none): no restart ended this attempt
    return order


def stalls(job: Job) -> int:
    """The watchdog's restarts of earlier attempts of this job (0 after an operator's retry)."""
    data = atomic.read_dict(job.path / ATTEMPT) or {}
    value = data.get("stalls", 0)
    return value if isinstance(value, int) else 0


def next_attempt(job: Job, attempt: int, stall_count: int) -> None:
    atomic.write_json(job.path / ATTEMPT, {"attempt": attempt, "stalls": stall_count})


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
