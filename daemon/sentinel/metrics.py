"""The watchdog's node_exporter textfile, `lipsyncd_watchdog.prom`, written with prometheus_client.

The registry refuses two families whose names clash (a gauge `x` beside a counter `x_total`) and the
client writes `+Inf`/`NaN` and label escapes the way Prometheus and OpenMetrics parsers read them;
`write_to_textfile` writes a temp name (not ending in .prom) and renames it. No sample carries a
timestamp (node_exporter rejects them). Only the watchdog imports this module.

Share-wide series (jobs, disk, queue) are the same on every host's watchdog: aggregate them with max(),
not sum(). Per-worker series cover this host's workers only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

FILE = "lipsyncd_watchdog.prom"
STATES = ("inbox", "staging", "processing", "done", "failed")


class Snapshot(Collector):
    """One watchdog pass (`Patrol.snapshot()`) as metric families; built anew for every write."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snap = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._watchdog()
        yield from self._workers()
        yield from self._alerts()
        yield from self._appliance(self.snap.get("share") or {})

    def _watchdog(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("lipsyncd_watchdog_last_pass_timestamp_seconds",
                                "When the watchdog last finished a pass.", value=self.snap["written_at"])
        yield GaugeMetricFamily("lipsyncd_share_reachable", "1 if the share answered the last pass.",
                                value=int(bool(self.snap["share_ok"])))

    def _workers(self) -> Iterator[Metric]:
        workers = sorted(self.snap["workers"].items())
        healthy = GaugeMetricFamily("lipsyncd_worker_healthy", "1 if the worker's verdict is healthy.",
                                    labels=["worker", "health"])
        recent = GaugeMetricFamily("lipsyncd_worker_recent_restarts",
                                   "Restarts the watchdog requested within the restart window.", labels=["worker"])
        total = CounterMetricFamily("lipsyncd_worker_restarts", "Restarts the watchdog requested since it started.",
                                    labels=["worker"])
        for key, w in workers:
            healthy.add_metric([key, w["health"]], int(w["health"] == "healthy"))
            recent.add_metric([key], w["restarts"])
            total.add_metric([key], w.get("restarts_total", 0))
        yield from (healthy, recent, total)

    def _alerts(self) -> Iterator[Metric]:
        channels = sorted(self.snap["channels"].items())
        sent = CounterMetricFamily("lipsyncd_alerts_sent", "Alert messages delivered, by channel.",
                                   labels=["channel"])
        failed = CounterMetricFamily("lipsyncd_alerts_failed", "Failed alert delivery attempts, by channel and "
                                     "the vendor's (or HTTP) error code.", labels=["channel", "code"])
        for name, ch in channels:
            sent.add_metric([name], ch.get("sent", 0))
            for code, count in sorted((ch.get("failures") or {}).items()):
                failed.add_metric([name, str(code)], count)
        yield from (sent, failed)
        yield GaugeMetricFamily("lipsyncd_alerts_pending", "Alerts waiting in the outbox.",
                                value=self.snap["outbox_pending"])

    def _appliance(self, share: dict[str, Any]) -> Iterator[Metric]:
        if not share:
            return  # the share has not answered yet: no numbers rather than zeros
        jobs = GaugeMetricFamily("lipsyncd_jobs", "Jobs per state folder (inbox: tickets waiting).", labels=["state"])
        for state in STATES:
            jobs.add_metric([state], share["jobs"].get(state, 0))
        yield jobs
        yield GaugeMetricFamily("lipsyncd_oldest_queued_age_seconds", "How long the oldest job in staging/ has "
                                "waited.", value=share["oldest_queued_age_s"])
        if share.get("disk_free_bytes") is not None:
            yield GaugeMetricFamily("lipsyncd_share_free_bytes", "Free space on the share.",
                                    value=share["disk_free_bytes"])
        yield GaugeMetricFamily("lipsyncd_intake_paused", "1 while intake does not accept drops (disk or share).",
                                value=int(share["intake_paused"]))
        finished = CounterMetricFamily("lipsyncd_jobs_finished", "Jobs that reached done/ or failed/ since the "
                                       "watchdog started.", labels=["state"])
        for state, count in sorted(share["finished"].items()):
            finished.add_metric([state], count)
        yield finished
        yield SummaryMetricFamily("lipsyncd_job_render_seconds", "Render time of jobs finished since the watchdog "
                                  "started.", count_value=share["render_s_count"], sum_value=share["render_s_sum"])
        yield from _beats(share["beats"])


def _beats(beats: dict[str, Any]) -> Iterator[Metric]:
    """Per-worker gauges from heartbeats; a value the heartbeat lacks is left out, never written as 0."""
    for name, key, help_text in (
            ("lipsyncd_worker_frames_per_second", "fps", "Frames per second of the worker's current job."),
            ("lipsyncd_worker_heartbeat_age_seconds", "heartbeat_age_s", "Seconds since the worker's last heartbeat."),
            ("lipsyncd_worker_progress_age_seconds", "progress_age_s", "Seconds since the worker last made progress."),
            ("lipsyncd_worker_resident_memory_bytes", "rss_bytes",
             "Resident memory of the worker process and its ffmpeg children (psutil).")):
        family = GaugeMetricFamily(name, help_text, labels=["worker"])
        for worker, beat in sorted(beats.items()):
            if beat.get(key) is not None:
                family.add_metric([worker], beat[key])
        yield family


class _Family(Collector):
    """One family as its own collector: the registry checks for clashes between collectors only."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterator[Metric]:
        yield self.family


def registry(snapshot: dict[str, Any], source: type[Snapshot] = Snapshot) -> CollectorRegistry:
    """A fresh registry holding this pass; raises ValueError (DuplicateTimeseries) if two names clash,
    e.g. a gauge `x` beside a counter `x_total`, which OpenMetrics parsers refuse."""
    reg = CollectorRegistry(auto_describe=True)
    for family in source(snapshot).collect():
        reg.register(_Family(family))
    return reg


def write_textfile(folder: Path, snapshot: dict[str, Any], source: type[Snapshot] = Snapshot) -> None:
    # the temp name is FILE + ".<pid>.<thread>": not *.prom, so node_exporter never reads it half-written
    write_to_textfile(str(folder / FILE), registry(snapshot, source))
