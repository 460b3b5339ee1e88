"""Run the whole appliance under faults for a while, then audit it; exit 1 if any invariant broke.

    python -m tests.faults.runner --seed 7 --duration 600 --jobs 400 --burst 500 --report run.json

The seed fixes the schedule (which faults, when, which jobs); the operating system's timing does the rest.
Needs root for the disk-full fault (a loop-mounted ext4 share); without it that fault is skipped.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a script: chat_server, conftest and faults live in tests/
    sys.path.insert(0, str(TESTS))

from chat_server import ChatServer  # noqa: E402
from conftest import entries, make_media  # noqa: E402

from faults.appliance import Appliance, appliance_env  # noqa: E402
from faults.audit import Audit  # noqa: E402
from faults.disk import SmallDisk  # noqa: E402
from faults.injector import KINDS, Injector, schedule  # noqa: E402
from faults.producer import BAD, Producer  # noqa: E402

SHORT_FAULTS = {"kill_worker": 2, "kill_intake": 2, "stop_worker": 2, "disk_full": 1, "chat_down": 1,
                "chat_hang": 1, "chat_ratelimit": 1, "burst": 1}
DURATIONS = {"good": 0.6, "long": 40.0}  # seconds of speech in short.wav / talk.wav (make_media)


@dataclass
class RunSpec:
    seed: int = 1
    duration_s: float = 60.0  # how long faults are injected and jobs dropped; draining comes after
    jobs: int = 30  # background drops spread over the run, besides the burst and the faults' long jobs
    burst: int = 20
    bad_share: float = 0.2
    long_share: float = 0.05
    share_mb: int = 256
    disk_hold_s: tuple[float, float] = (2.0, 5.0)
    drain_s: float = 600.0
    alerts_wait_s: float = 300.0
    faults: dict[str, int] = field(default_factory=lambda: dict(SHORT_FAULTS))
    workdir: Path | None = None
    media: Path | None = None
    keep: bool = False


def scaled_faults(duration_s: float) -> dict[str, int]:
    """One round of every fault per 150 s of run; a single burst."""
    rounds = max(1, int(duration_s // 150))
    return {k: (1 if k == "burst" else n * rounds) for k, n in SHORT_FAULTS.items()}


def run(spec: RunSpec) -> dict[str, Any]:
    work = spec.workdir or Path(tempfile.mkdtemp(prefix="lipsyncd-faults-"))
    media = spec.media or make_media(_mkdir(work / "media"))
    disk = SmallDisk(work, spec.share_mb)
    root = disk.mount()
    chat = ChatServer(ding_keyword="lipsyncd").start()
    app = Appliance(root, appliance_env(root, chat), work / "up.log")
    rng = random.Random(spec.seed)
    producer = Producer(_mkdir(root / "inbox"), media, random.Random(spec.seed + 1))
    injector = Injector(app, disk, chat, producer, random.Random(spec.seed + 2), spec.burst, spec.disk_hold_s)
    started_wall = time.time()
    try:
        app.start()
        _inject_and_produce(spec, rng, injector, producer)
        drained = _drain(root, producer, spec.drain_s)
        alerts_settled_s = _settle_alerts(root, spec.alerts_wait_s)
        up_exit = app.stop()
        audit = Audit(root, producer.dropped, injector.faults, chat, app.log_text(), injector.burst_names,
                      DURATIONS)
        figures = audit.run()
        if up_exit != 0:
            audit.fail("lipsyncd up did not stop cleanly on Ctrl-C", [f"exit {up_exit}"])
        figures.update(seed=spec.seed, duration_s=spec.duration_s, drained=drained, alerts_settled_s=alerts_settled_s,
                       wall_s=round(time.time() - started_wall, 1), producer_full_retries=producer.full_retries,
                       share=f"loop ext4 {spec.share_mb} MB" if disk.mounted else "plain folder",
                       failures=audit.failures, workdir=str(work))
        return figures
    finally:
        app.stop(timeout=10)
        chat.down()
        if not spec.keep:
            disk.unmount()
            if spec.workdir is None:
                shutil.rmtree(work, ignore_errors=True)


def _inject_and_produce(spec: RunSpec, rng: random.Random, injector: Injector, producer: Producer) -> None:
    """Faults and background drops side by side for `duration_s`, each on its own seeded schedule."""
    plan = schedule(rng, spec.duration_s, spec.faults)
    drops = sorted(rng.uniform(0, 0.8 * spec.duration_s) for _ in range(spec.jobs))
    # every kind of bad input at least once, the rest drawn at random
    kinds = [*BAD, *(producer.pick_kind(spec.bad_share, spec.long_share) for _ in drops)][:len(drops)]
    rng.shuffle(kinds)
    began = time.monotonic()
    threads = [threading.Thread(target=injector.run, args=(plan, began, began + spec.duration_s),
                                name="faults", daemon=True),
               threading.Thread(target=_produce, args=(producer, list(zip(drops, kinds, strict=True)), began),
                                name="producer", daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    injector.finish()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _produce(producer: Producer, plan: list[tuple[float, str]], began: float) -> None:
    for offset, kind in plan:
        time.sleep(max(0.0, began + offset - time.monotonic()))
        producer.drop(kind)


def _drain(root: Path, producer: Producer, timeout: float) -> bool:
    """Wait until every landed ticket has become a job in done/ or failed/ and nothing is queued."""
    deadline = time.monotonic() + timeout
    want = sum(1 for d in producer.dropped if d.dropped_at)
    while time.monotonic() < deadline:
        terminal = len(entries(root / "done")) + len(entries(root / "failed"))
        busy = entries(root / "staging") or entries(root / "processing")
        tickets = [n for n in entries(root / "inbox") if n.endswith(".toml")]
        if terminal >= want and not busy and not tickets:
            return True
        time.sleep(1.0)
    return False


def _settle_alerts(root: Path, timeout: float) -> float | None:
    """Give the watchdog's outbox time to deliver what piled up during chat faults (its backoff after a run
    of failures reaches minutes); returns how long that took, None if alerts were still pending."""
    began = time.monotonic()
    while time.monotonic() < began + timeout:
        try:
            status = json.loads((root / ".lipsyncd" / "roles" / "watchdog.json").read_text())
            if status.get("outbox_pending") == 0:
                return round(time.monotonic() - began, 1)
        except (OSError, ValueError):
            pass
        time.sleep(1.0)
    return None


def summarize(faults: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per fault kind: how many struck, how many recovered, and the spread of recovery times."""
    out: dict[str, dict[str, Any]] = {}
    for kind in sorted({f["kind"] for f in faults}):
        struck = [f for f in faults if f["kind"] == kind and f["at"]]
        times = sorted(f["recovery_s"] for f in struck if f.get("recovery_s") is not None)
        out[kind] = {"count": len(struck), "recovered": len(times),
                     "min": times[0] if times else None,
                     "median": round(statistics.median(times), 2) if times else None,
                     "max": times[-1] if times else None}
    return out


def render(figures: dict[str, Any]) -> str:
    out = [f"seed {figures['seed']}, {figures['duration_s']:.0f} s of faults, {figures['wall_s']:.0f} s wall, "
           f"share: {figures['share']}",
           f"jobs submitted: {figures['submitted']} {figures['by_kind']}",
           f"outcomes: {json.dumps(figures['outcomes'])}",
           f"inputs lost: {figures['inputs_lost']}   duplicate results: {figures['duplicate_results']}   "
           f"partial files under final names: {figures['partial_under_final_names']}",
           f"watchdog: {json.dumps(figures['watchdog'])}",
           f"producer copies refused by a full share and retried: {figures['producer_full_retries']}",
           f"drained: {figures['drained']}; pending alerts delivered {figures['alerts_settled_s']} s after the "
           "queue drained",
           "faults (recovery_s = fault → recovered):"]
    for row in figures["faults"]:
        out.append("  " + json.dumps(row))
    out.append("recovery by fault kind (s): count, recovered, min / median / max")
    for kind, row in summarize(figures["faults"]).items():
        out.append(f"  {kind:15} {row['count']:3} {row['recovered']:3}   {row['min']} / {row['median']} / {row['max']}")
    out.append("INVARIANTS HOLD" if not figures["failures"] else "INVARIANTS BROKEN:")
    out += [f"  - {f}" for f in figures["failures"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults and drops")
    parser.add_argument("--jobs", type=int, default=30, help="background drops over the run")
    parser.add_argument("--burst", type=int, default=20, help="tickets dropped at once by the burst fault")
    parser.add_argument("--share-mb", type=int, default=256)
    parser.add_argument("--disk-hold", type=float, nargs=2, default=(2.0, 5.0), metavar=("MIN", "MAX"),
                        help="seconds the share stays full (default 2 5; above ~12 `up` gives up on the workers)")
    parser.add_argument("--drain", type=float, default=900.0, help="max seconds to wait for the queue after")
    parser.add_argument("--alerts-wait", type=float, default=300.0,
                        help="max seconds to wait after draining for alerts held back by chat faults")
    parser.add_argument("--only", help=f"comma-separated fault kinds to inject (of {', '.join(KINDS)})")
    parser.add_argument("--report", type=Path, help="write the figures as JSON here")
    parser.add_argument("--workdir", type=Path, help="keep media, logs and (with --keep) the share here")
    parser.add_argument("--keep", action="store_true", help="leave the share mounted for inspection")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID: stop up, unmount, like Ctrl-C
    faults = scaled_faults(args.duration)
    if args.only:
        faults = {k: n for k, n in faults.items() if k in args.only.split(",")}
    spec = RunSpec(seed=args.seed, duration_s=args.duration, jobs=args.jobs, burst=args.burst,
                   share_mb=args.share_mb, disk_hold_s=tuple(args.disk_hold), drain_s=args.drain,
                   alerts_wait_s=args.alerts_wait, faults=faults,
                   workdir=_mkdir(args.workdir) if args.workdir else None, keep=args.keep)
    figures = run(spec)
    print(render(figures))
    if args.report:
        args.report.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    return 1 if figures["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
