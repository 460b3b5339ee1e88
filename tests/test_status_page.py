"""STATUS.html rendered by a real headless Chromium: what a producer sees, in both languages, escaped."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import busy_share
import pytest
from conftest import Roles, drop_job, entries, env_for, wait_for

from daemon.housekeeping.board import HTML, JSON, Board

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian package chromium not installed")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium(tmp_path: Path, page: Path, *args: str) -> str:
    assert CHROMIUM is not None
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
                           page.as_uri()], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Dom(HTMLParser):
    """The dumped DOM as tags, attributes, and text per element id (tables and cards)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_by_id: dict[str, list[str]] = {}
        self._open: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("meta", "br", "img", "input", "link"):
            self._open.append(a.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("meta", "br", "img", "input", "link"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in filter(None, self._open):
            self.text_by_id.setdefault(ident, []).append(data)

    def text(self, ident: str) -> str:
        return " ".join(" ".join(self.text_by_id.get(ident, [])).split())

    def count(self, tag: str) -> int:
        return sum(1 for t, _a in self.tags if t == tag)

    def attrs(self, ident: str) -> dict[str, str | None]:
        return next(a for _t, a in self.tags if a.get("id") == ident)


@needs_chromium
def test_page_shows_running_queued_done_and_failed_jobs_and_escapes_producer_strings(root: Path,
                                                                                      tmp_path: Path) -> None:
    ids = busy_share.build(root)
    Board(root, "en", 5.0, 20).write()
    dom = Dom(chromium(tmp_path, root / HTML, "--dump-dom"))

    running = dom.text("running")
    assert ids["running"] in running and "gpuhost/gpu0" in running
    assert "38%" in running and "3/8" in running and "24.5" in running and "3 min" in running  # ETA 204 s
    queue = dom.text("queue")
    assert queue.index(ids["queued_old"]) < queue.index(ids["queued_new"])  # oldest first
    assert "10 min" in queue and busy_share.EVIL_BATCH in queue  # shown as text, not run
    failed = dom.text("failed")
    assert ids["failed"] in failed and busy_share.EVIL_FILE in failed and "has no picture" in failed
    assert "Re-export" in failed  # what to do, from the message catalogue
    done = dom.text("done")
    assert ids["done"] in done and "welcome.mp4" in done and "1 min" in done  # 95 s render
    workers = dom.text("workers")
    assert "gpuhost/gpu0 · GPU 0" in workers and "working" in workers and "gpuhost/gpu1" in workers
    assert "idle" in workers
    assert "NVIDIA H100" in dom.text("gpus") and "21.0 GB / 80.0 GB" in dom.text("gpus")
    alerts = dom.text("alerts")
    assert "dingtalk" in alerts and "feishu" in alerts and "BROKEN" in alerts and "<b>bold</b>" in alerts
    assert dom.text("card-queued").startswith("2 Queued") and "oldest waits 10 min" in dom.text("card-queued")
    assert dom.text("card-running").startswith("1") and dom.text("card-failed").startswith("1")
    assert "accepting drops" in dom.text("card-intake")
    # producer strings stayed text: our one script, no injected image or bold element
    assert dom.count("script") == 1 and dom.count("img") == 0
    assert dom.count("b") == 7  # the seven cards' figures; the channel error's <b> stayed text
    assert dom.attrs("stale").get("hidden") is not None  # fresh page: no staleness warning
    assert ("meta", {"http-equiv": "refresh", "content": "5"}) in dom.tags
    shot = tmp_path / "phone.png"
    chromium(tmp_path, root / HTML, "--window-size=390,1400", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@needs_chromium
def test_page_speaks_chinese_when_configured(root: Path, tmp_path: Path) -> None:
    ids = busy_share.build(root)
    Board(root, "zh", 5.0, 20).write()
    page = chromium(tmp_path, root / HTML, "--dump-dom")
    dom = Dom(page)
    assert ("html", {"lang": "zh-CN"}) in dom.tags
    for heading in ("正在处理", "队列", "工作进程", "最近失败", "最近完成", "告警通道"):
        assert heading in page
    assert "10分" in dom.text("queue") and ids["queued_old"] in dom.text("queue")
    assert "正在接收任务" in dom.text("card-intake")


@needs_chromium
def test_a_page_nobody_rewrites_warns_that_it_is_stale(root: Path, tmp_path: Path) -> None:
    busy_share.build(root)
    Board(root, "en", 5.0, 20, clock=lambda: time.time() - 3600).write()  # the writer stopped an hour ago
    dom = Dom(chromium(tmp_path, root / HTML, "--dump-dom"))
    assert dom.attrs("stale").get("hidden") is None
    assert "60 min old" in dom.text("stale") and "intake" in dom.text("stale")


def test_paused_intake_is_a_banner_and_status_json_carries_the_same_picture(root: Path) -> None:
    ids = busy_share.build(root)
    intake = root / ".lipsyncd" / "roles" / "intake.json"
    intake.write_text(json.dumps({"paused": True, "pause_reason": "disk: 0.01 GB free <now>"}))
    snap = Board(root, "en", 5.0, 20).write()
    page = (root / HTML).read_text()
    assert 'id="intake-paused"' in page and "disk: 0.01 GB free &lt;now&gt;" in page
    data = json.loads((root / JSON).read_text())
    assert data == json.loads(json.dumps(snap))
    assert data["counts"] == {"inbox": 0, "staging": 2, "processing": 1, "done": 1, "failed": 1}
    assert [q["job"] for q in data["queued"]] == [ids["queued_old"], ids["queued_new"]]
    assert data["running"][0]["percent"] == 37.5 and data["running"][0]["chunk"] == 3
    assert data["failed"][0]["code"] == "media_invalid" and data["intake"]["paused"] is True
    assert data["oldest_wait_s"] >= 600
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".lipsyncd"]
    assert leftovers == []  # temp files were renamed into place, none left behind


def test_the_intake_role_keeps_both_files_current_from_real_jobs(root: Path, media_dir: Path,
                                                                  roles: Roles) -> None:
    env = env_for(root, LIPSYNCD_STATUS_INTERVAL_S="0.5", LIPSYNCD_GENERAL_LANGUAGE="zh")
    roles.start("intake", env=env)
    roles.start("worker", "--gpu", "0", env=env)
    drop_job(root, "lesson", media_dir / "a.wav", media_dir / "v.mp4", extra=f"batch = '{busy_share.EVIL_BATCH}'\n")
    drop_job(root, "nopicture", media_dir / "a.wav", media_dir / "a.wav")
    wait_for(lambda: len(entries(root / "done")) == 1 and len(entries(root / "failed")) == 1, 60, "both outcomes")

    def shows_both() -> bool:
        try:
            data = json.loads((root / JSON).read_text())
        except (OSError, ValueError):
            return False
        return len(data["done"]) == 1 and len(data["failed"]) == 1 and data["workers"] != []

    wait_for(shows_both, 20, "status.json to show both outcomes")
    data = json.loads((root / JSON).read_text())
    assert data["language"] == "zh" and data["done"][0]["batch"] == busy_share.EVIL_BATCH
    assert data["workers"][0]["gpu"] == "0" and data["intake"]["paused"] is False
    page = (root / HTML).read_text()
    assert "&lt;script&gt;alert(&quot;batch&quot;)&lt;/script&gt;" in page and busy_share.EVIL_BATCH not in page
    assert entries(root / "done")[0] in page and entries(root / "failed")[0] in page and "最近完成" in page
    before = (root / JSON).stat().st_mtime_ns
    wait_for(lambda: (root / JSON).stat().st_mtime_ns != before, 10, "the next rewrite")


def test_garbage_in_other_roles_files_shows_as_dashes_not_a_crash(root: Path) -> None:
    busy_share.build(root)
    (root / ".lipsyncd" / "roles" / "watchdog.json").write_text(json.dumps({
        "channels": {"x": "not a dict", "y": {"state": "weird", "sent": "many"}},
        "gpus": [{"host": "h", "index": 0, "used": "lots", "total": None}]}))
    running = next((root / "processing").iterdir())
    (running / "progress.json").write_text(json.dumps({"attempt": 1, "percent": "half", "eta_s": "soon",
                                                       "fps": [1], "chunk": "<i>", "chunks": 2}))
    Board(root, "en", 5.0, 20).write()
    page = (root / HTML).read_text()
    assert "&lt;i&gt;/2" in page and "lots" not in page and "soon" not in page
