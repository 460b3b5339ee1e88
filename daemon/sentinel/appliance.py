"""The appliance's own conditions, one incident each: queue waiting, disk low, intake down or refusing the
share, a GPU lost or its memory full, an alert channel failing.

The share-wide ones read the pass's survey; the host's own (GPUs, channels) are checked every pass, also
while the share hangs.
"""

from __future__ import annotations

from daemon.core.config import WatchdogConfig
from daemon.sentinel.alarm import Alarm, minutes
from daemon.sentinel.alerts import wording
from daemon.sentinel.alerts.alert import Severity
from daemon.sentinel.alerts.outbox import Outbox
from daemon.sentinel.gpu import GpuLost, NvmlProbe
from daemon.sentinel.survey import Survey


class Appliance:
    def __init__(self, cfg: WatchdogConfig, alarm: Alarm, outbox: Outbox, gpu: NvmlProbe | None,
                 started_at: float) -> None:
        self.cfg, self.alarm, self.outbox, self.gpu, self.started_at = cfg, alarm, outbox, gpu, started_at
        self.gpu_readings: list[dict[str, object]] = []  # the last read, for status

    def check_share(self, survey: Survey, now: float) -> None:
        self._queue_and_disk(survey, now)
        self._intake(survey, now)

    def check_host(self, now: float) -> None:
        self._gpus(now)
        self._channels(now)

    def _queue_and_disk(self, survey: Survey, now: float) -> None:
        oldest = survey.oldest_queued
        waiting = oldest is not None and now - oldest[1] > self.cfg.queue_wait_min * 60
        self.alarm.condition("queue", waiting, "queue_waiting", Severity.WARNING, now,
                             job=oldest[0] if oldest else "-", queued=survey.queued,
                             minutes=minutes(now - oldest[1]) if oldest else 0)
        free = survey.disk_free_bytes
        # intake's own disk guard (intake.pause_below_free_gb) may trip first: a paused intake is news too
        paused = bool((survey.intake or {}).get("disk_low"))
        low = paused or (free is not None and free < self.cfg.disk_free_min_gb * 1e9)
        intake = wording.say("intake_paused_disk" if paused else "intake_running", self.alarm.language)[1]
        self.alarm.condition("disk", low, "disk_low", Severity.WARNING, now,
                             free_gb=f"{(free or 0) / 1e9:.2f}", min_gb=f"{self.cfg.disk_free_min_gb:g}",
                             intake=intake)

    def _intake(self, survey: Survey, now: float) -> None:
        mtime = survey.intake_mtime
        # intake.json's mtime is stamped by the share's clock; the survey moved it onto ours
        # a missing intake.json counts from our own start, so starting before intake is no incident
        stale = now - (mtime if mtime is not None else self.started_at) > self.cfg.intake_stale_s
        detail = "never written" if mtime is None else f"pid {(survey.intake or {}).get('pid', '?')}"
        self.alarm.condition("intake", stale, "intake_down", Severity.WARNING, now,
                             age=f"{now - mtime:.0f}" if mtime else "∞", detail=detail)
        # intake refuses to touch a share whose state folder became a link or a mount
        refusing = str((survey.intake or {}).get("refusing") or "")
        self.alarm.condition("intake_refusing", bool(refusing), "intake_refusing", Severity.CRITICAL, now,
                             detail=refusing.removeprefix("layout: "))

    def _gpus(self, now: float) -> None:
        if self.gpu is None or not self.gpu.available or not self.cfg.gpu_check:
            return
        try:
            readings = self.gpu.read()
            lost = ""
        except GpuLost as exc:
            readings, lost = [], str(exc)
        self.gpu_readings = [{"host": self.alarm.host, "index": r.index, "uuid": r.uuid, "used": r.used,
                              "total": r.total} for r in readings]
        self.alarm.condition("gpu", bool(lost), "gpu_lost", Severity.CRITICAL, now, detail=lost)
        for r in readings:
            full = r.used_pct >= self.cfg.gpu_memory_full_pct
            self.alarm.condition(f"gpumem:{r.index}", full, "gpu_memory_full", Severity.WARNING, now,
                                 index=r.index, used_gb=f"{r.used / 1e9:.1f}",
                                 total_gb=f"{r.total / 1e9:.1f}", pct=f"{r.used_pct:.0f}")

    def _channels(self, now: float) -> None:
        for name, health in self.outbox.health().items():
            broken = health["state"] == "broken"
            hint = health.get("hint") or (
                "This host's clock is off: fix NTP/chrony; signatures are only valid within an hour."
                if health["clock_skew"] else "Check its webhook, secret and keyword in the config.")
            self.alarm.condition(f"channel:{name}", broken, "channel_broken", Severity.WARNING, now,
                                 channel=name, error=health["last_error"] or "?", hint=hint)
