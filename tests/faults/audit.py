"""After a fault run: read the share, the chat server and `up`'s log, and prove (or refute) the invariants.

Figures: jobs submitted, terminal outcomes, inputs lost, duplicate results, partial files under final
names, stalls / restarts / alerts, and time from each fault to recovery. `failures` lists every broken
invariant with the jobs or files concerned; an empty list is a pass.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from chat_server import ChatServer

from faults.injector import Fault
from faults.producer import Dropped

STATES = ("staging", "processing", "done", "failed")
# codes that blame the producer's input: a good input must never end with one of these
PRODUCER_CODES = ("media_invalid", "files_missing", "file_empty", "input_vanished", "media_playlist",
                  "media_unreadable", "media_no_video", "media_audio_as_video", "media_no_audio",
                  "media_too_short", "media_too_long", "media_limits", "video_truncated")
MEDIA_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v", ".webm")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jobs(root: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for state in STATES:
        folder = root / state
        out[state] = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if folder.is_dir() else []
    return out


def _history(folder: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in (folder / "history.jsonl").read_text(errors="replace").splitlines() \
            if (folder / "history.jsonl").is_file() else []:
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def _probe(path: Path) -> tuple[float, list[str]]:
    done = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type",
                           "-of", "json", str(path)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return 0.0, []
    info = json.loads(done.stdout or "{}")
    return float(info.get("format", {}).get("duration") or 0), [s.get("codec_type") for s in info.get("streams", [])]


class Audit:
    def __init__(self, root: Path, dropped: list[Dropped], faults: list[Fault], chat: ChatServer,
                 up_log: str, burst_names: list[str], durations: dict[str, float]) -> None:
        self.root, self.dropped, self.faults, self.chat = root, dropped, faults, chat
        self.up_log, self.burst_names, self.durations = up_log, set(burst_names), durations
        self.failures: list[str] = []
        self.jobs = _jobs(root)
        self.by_name: dict[str, list[tuple[str, Path]]] = {}
        for state, folders in self.jobs.items():
            for folder in folders:
                self.by_name.setdefault(folder.name.split("-", 1)[0], []).append((state, folder))

    def fail(self, what: str, items: list[str]) -> None:
        if items:
            shown = ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
            self.failures.append(f"{what}: {len(items)}: {shown}")

    def run(self) -> dict[str, Any]:
        landed = [d for d in self.dropped if d.dropped_at]
        figures: dict[str, Any] = {"submitted": len(landed), "by_kind": dict(Counter(d.kind for d in landed))}
        figures["outcomes"] = self.outcomes(landed)
        figures["inputs_lost"] = self.inputs_lost(landed)
        figures["duplicate_results"] = self.duplicates()
        figures["partial_under_final_names"] = self.partials()
        figures["watchdog"] = self.watchdog()
        figures["faults"] = self.recoveries()
        figures["failures"] = self.failures
        return figures

    # --- every drop ends in exactly one terminal folder, for the right reason -------------------------
    def outcomes(self, landed: list[Dropped]) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        unfinished: list[str] = []
        twice: list[str] = []
        blamed: list[str] = []
        wrong: list[str] = []
        for drop in landed:
            places = self.by_name.get(drop.name, [])
            terminal = [(s, f) for s, f in places if s in ("done", "failed")]
            if len(places) != 1 or not terminal:
                (twice if len(places) > 1 else unfinished).append(f"{drop.name} in {[s for s, _ in places]}")
                continue
            state, folder = terminal[0]
            report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").is_file() else {}
            code = str(report.get("code", "?"))
            want_state, want_code, want_text = drop.expect
            error = ""
            if state == "failed":
                reasons[code] += 1
                error = (folder / "error.txt").read_text() if (folder / "error.txt").is_file() else ""
                if not error.strip() or report.get("state") != "failed":
                    wrong.append(f"{folder.name}: failed without error.txt/report")
            if want_state == "done":
                counts["done" if state == "done" else "good_failed"] += 1
                if state == "failed" and code in PRODUCER_CODES:
                    blamed.append(f"{folder.name}: {code}: {report.get('message_en', '')[:120]}")
            elif state == "failed" and code == want_code and want_text in error:
                counts["expected_bad_failed"] += 1
            else:
                wrong.append(f"{folder.name} ({drop.kind}): {state}/{code}")
        self.fail("jobs not in exactly one terminal folder", unfinished)
        self.fail("tickets accepted more than once", twice)
        self.fail("good inputs failed as the producer's fault", blamed)
        self.fail("bad inputs not failed with their reason", wrong)
        leftovers = [str(p.relative_to(self.root)) for p in (self.root / ".lipsyncd" / "intake").rglob("*")
                     if p.is_file()] if (self.root / ".lipsyncd" / "intake").is_dir() else []
        self.fail("files stranded in intake transactions", leftovers)
        return {**counts, "failed_reasons": dict(reasons), "unfinished": len(unfinished)}

    # --- nothing is lost ------------------------------------------------------------------------------
    def inputs_lost(self, landed: list[Dropped]) -> int:
        # a job still queued keeps its inputs too: that is "unfinished" (checked above), not "lost"
        found: dict[str, set[str]] = {}
        places = [self.root / "inbox", *(f / "inputs" for s in STATES for f in self.jobs[s]),
                  *(self.root / ".lipsyncd" / "intake").glob("*/*/inputs")]
        for place in places:
            if place.is_dir():
                for path in place.iterdir():
                    if path.is_file():
                        found.setdefault(path.name, set()).add(_sha(path))
        lost = [f"{name}" for d in landed for name, digest in d.files.items() if digest not in found.get(name, ())]
        self.fail("inputs lost (no byte-identical copy in inbox/ or any job's inputs/)", lost)
        return len(lost)

    # --- exactly once ---------------------------------------------------------------------------------
    def duplicates(self) -> int:
        bad = []
        for folder in self.jobs["done"]:
            spec = json.loads((folder / "job.json").read_text())
            results = [p.name for p in folder.iterdir() if p.is_file() and p.suffix in MEDIA_SUFFIXES
                       and not p.name.startswith(".")]
            events = _history(folder)
            dones = [e for e in events if e.get("event") == "moved" and e.get("to") == "done"]
            claims = [e for e in events if e.get("event") == "moved" and e.get("to") == "processing"]
            if results != [spec["output"]] or len(dones) != 1:
                bad.append(f"{folder.name}: results {results}, {len(dones)} moves to done/")
            elif not claims or claims[-1].get("pid") != dones[0].get("pid"):
                bad.append(f"{folder.name}: finished by pid {dones[0].get('pid')}, last claim by "
                           f"{claims[-1].get('pid') if claims else None}")
        ids = Counter(f.name.split("@")[0] for s in STATES for f in self.jobs[s])
        bad += [f"{job} in {n} state folders" for job, n in ids.items() if n > 1]
        self.fail("duplicate results or claims", bad)
        return len(bad)

    # --- nothing is published half-written --------------------------------------------------------------
    def partials(self) -> int:
        bad = []
        for folder in self.jobs["done"]:
            spec = json.loads((folder / "job.json").read_text())
            want = self.durations.get(_kind_of(spec["audio"]), 0.0)
            duration, kinds = _probe(folder / spec["output"])
            if "video" not in kinds or "audio" not in kinds or (want and abs(duration - want) > 0.3):
                bad.append(f"{folder.name}: {spec['output']} {duration:.2f} s {kinds} (want {want} s)")
        for folder in self.jobs["failed"]:
            spec_path = folder / "job.json"
            if spec_path.is_file() and (folder / json.loads(spec_path.read_text())["output"]).exists():
                bad.append(f"{folder.name}: a result under its final name in failed/")
        self.fail("partial files under final names", bad)
        return len(bad)

    # --- the watchdog and the humans it tells -----------------------------------------------------------
    def watchdog(self) -> dict[str, Any]:
        status_path = self.root / ".lipsyncd" / "roles" / "watchdog.json"
        status = json.loads(status_path.read_text()) if status_path.is_file() else {}
        restart_events = sum(1 for s in STATES for f in self.jobs[s] for e in _history(f)
                             if e.get("event") == "watchdog_restart")
        texts = {p: self.chat.texts(p) for p in ("dingtalk", "wecom")}
        stops = [f for f in self.faults if f.kind == "stop_worker" and f.at]
        unalerted = [f"{f.detail['child']} at {f.at:.0f}" for f in stops for p in texts
                     if not any(r.platform == p and r.at >= f.at and "stalled" in r.text
                                and f.detail["child"].split("-")[1] in r.text for r in self.chat.received)]
        self.fail("stalls without a stall alert in every chat", unalerted)
        return {
            "stalls_detected": len(re.findall(r"→ stalled", self.up_log)),
            "restarts_requested": len(re.findall(r"restarting worker-\S+ on request", self.up_log)),
            "history_watchdog_restart_events": restart_events,
            "alerts_received": {p: len(t) for p, t in texts.items()},
            "stall_alerts": {p: sum("stalled" in t for t in ts) for p, ts in texts.items()},
            "disk_alerts": {p: sum("disk" in t.lower() for t in ts) for p, ts in texts.items()},
            "chat_requests": self.chat.requests,
            "channels": {name: {k: ch.get(k) for k in ("state", "sent", "failed")}
                         for name, ch in status.get("channels", {}).items()},
            "child_starts": {n: c for n, c in _starts(self.root).items()},
        }

    # --- time from each fault to recovery -------------------------------------------------------------
    def recoveries(self) -> list[dict[str, Any]]:
        finished = sorted(json.loads((f / "report.json").read_text())["timings"]["finished_at"]
                          for f in self.jobs["done"] if (f / "report.json").is_file())
        out, slow = [], []
        for fault in self.faults:
            row: dict[str, Any] = {"kind": fault.kind, "at": round(fault.at, 2), **fault.detail,
                                   "recovery_s": fault.recovery_s}
            if fault.kind == "disk_full" and fault.at:
                after = [t for t in finished if t > fault.detail["freed_at"]]
                row["next_done_after_free_s"] = round(after[0] - fault.detail["freed_at"], 2) if after else None
                row["recovery_s"] = round(after[0] - fault.at, 2) if after else None
            if fault.kind.startswith("chat_") and fault.at:
                # recovered: the next message a chat robot accepted (the courier backs off after failures)
                since = fault.detail.get("up_at", fault.at)
                back = [r.at for r in self.chat.received if r.at >= since]
                row["recovery_s"] = round(back[0] - fault.at, 2) if back else None
                if "up_at" in fault.detail:
                    row["first_alert_after_up_s"] = round(back[0] - since, 2) if back else None
            if fault.kind == "burst" and fault.at:
                ends = [json.loads((f / "report.json").read_text())["timings"]["finished_at"]
                        for s in ("done", "failed") for f in self.jobs[s]
                        if f.name.split("-", 1)[0] in self.burst_names and (f / "report.json").is_file()]
                row["recovery_s"] = round(max(ends) - fault.at, 1) if ends else None
            if fault.at and fault.kind in ("kill_worker", "kill_intake", "stop_worker") and fault.recovered_at is None:
                slow.append(f"{fault.kind} {fault.detail.get('child')}: no new process")
            if fault.kind == "stop_worker" and fault.recovery_s is not None and \
                    fault.recovery_s > fault.detail["limit_s"] + 10:
                slow.append(f"stop_worker {fault.detail['child']}: restarted after {fault.recovery_s} s")
            out.append(row)
        self.fail("faults not recovered in time", slow)
        return out


def _kind_of(audio: str) -> str:
    return "long" if Path(audio).name.startswith("l") else "good"


def _starts(root: Path) -> dict[str, Any]:
    try:
        children = json.loads((root / ".lipsyncd" / "control" / "up.json").read_text())["children"]
    except (OSError, ValueError, KeyError):
        return {}
    return {name: {"starts": c.get("starts"), "state": c.get("state")} for name, c in children.items()}
