"""STATUS.html on a phone (390 px) and a laptop (1280 px) in a real headless Chromium: what a producer
needs is visible at both widths (the failed job's "What to do", the result previews), times carry a
date and a zone. Layout is measured in the browser by a probe script; screenshots are kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import busy_share
import mediagen as g
import numpy as np
import pytest
from cdp import Browser
from test_status_page import CHROMIUM, FLAGS, needs_chromium

from daemon.core import atomic, report
from daemon.core.config import MediaConfig
from daemon.housekeeping.board import HTML, Board
from daemon.worker import preview
from daemon.worker.faces.cache import content_hash

SHOTS = Path(os.environ.get("LIPSYNCD_TEST_SHOTS", "")) if os.environ.get("LIPSYNCD_TEST_SHOTS") else None

PROBE = """(function(){
  function seen(el){var r=el.getBoundingClientRect(),s=getComputedStyle(el);
    return s.display!=='none'&&s.visibility!=='hidden'&&r.width>0&&r.height>0&&r.left>=0&&
           r.right<=document.documentElement.clientWidth+1;}
  return {width:document.documentElement.clientWidth,
    todo:[].map.call(document.querySelectorAll('#failed .todo'),function(t){return [t.textContent,seen(t)];}),
    reason:[].map.call(document.querySelectorAll('#failed td:nth-child(2)'),seen),
    imgs:[].map.call(document.querySelectorAll('img'),function(i){
      return [i.getAttribute('src'),i.complete?i.naturalWidth:-1,seen(i)];}),
    times:[].map.call(document.querySelectorAll('time'),function(t){return t.textContent;}),
    scroll:document.documentElement.scrollWidth};
})()"""


def look(tmp_path: Path, page: Path, width: int, shot: Path) -> dict[str, Any]:
    """Open `page` at `width` CSS px (a phone below 640: mobile emulation), measure it, screenshot it."""
    assert CHROMIUM is not None
    env = {**os.environ, "TZ": "Asia/Shanghai"}  # the producer's browser is in another zone than the writer
    browser = Browser(CHROMIUM, FLAGS, tmp_path / f"profile-{width}", env)
    try:
        browser.open(page.as_uri(), width, 900, mobile=width < 640)
        browser.evaluate("Promise.all([].map.call(document.images, function(i){return i.decode().catch("
                         "function(){});}))")  # lazy images are in view on a tall page: wait for them
        got = browser.evaluate(PROBE)
        browser.screenshot(shot)
    finally:
        browser.close()
    return got


def share_with_previews(root: Path, tmp_path: Path) -> dict[str, str]:
    ids = busy_share.build(root)
    result = g.astronaut_clip(tmp_path / "result.mp4", seconds=2, size=256)
    boxes = np.tile(np.array([[60, 40, 150, 140]], np.int32), (50, 1))
    (tmp_path / "fc").mkdir()
    np.save(tmp_path / "fc" / f"{content_hash(result)}-25_1-256x256-e5-s256.npy", boxes)
    stats = {"frames": 50, "source_frames": 50, "fps": 25.0, "width": 256, "height": 256}
    preview.write_done(root / "done" / ids["done"], result, result, stats, tmp_path / "fc", MediaConfig())
    faceless = root / "failed" / "pattern-20260101-000500.000-ffffff"
    (faceless / "inputs").mkdir(parents=True)
    pattern = g.clip(faceless / "inputs" / "pattern.mp4", seconds=2, size="160x120", audio=False)
    stats = {"frames": 50, "source_frames": 50, "fps": 25.0, "width": 160, "height": 120, "faces_missing": 50}
    with pytest.raises(Exception, match="No face was found"):
        preview.require_a_face(faceless, "warp", pattern, stats, MediaConfig(), faceless / ".out.part.mp4")
    report.write_failure(faceless, job_id=faceless.name, code="no_face", params={"name": "pattern.mp4"},
                         language="en", inputs={}, attempts=1, timings={"finished_at": 1_767_225_600.0})
    atomic.write_json(faceless / "job.json", {"id": faceless.name})
    ids["faceless"] = faceless.name
    return ids


@needs_chromium
def test_what_to_do_previews_and_zoned_times_are_visible_on_a_phone_and_a_laptop(root: Path,
                                                                               tmp_path: Path) -> None:
    ids = share_with_previews(root, tmp_path)
    Board(root, "en", 5.0, 20).write()
    page = (root / HTML).read_text()
    for width in (390, 1280):
        shot = tmp_path / f"status-{width}.png"
        got = look(tmp_path, root / HTML, width, shot)
        assert got["width"] == width
        assert len(got["todo"]) == 2 and all(text and visible for text, visible in got["todo"]), got["todo"]
        assert all(got["reason"])
        assert got["scroll"] <= width + 1  # nothing sticks out sideways: no hidden horizontal scroll
        imgs = {src: (natural, visible) for src, natural, visible in got["imgs"]}
        assert imgs[f"done/{ids['done']}/preview.jpg"] == (4 * preview.TILE, True)
        assert imgs[f"failed/{ids['faceless']}/preview.jpg"] == (4 * 320, True)  # the analysed frames
        assert got["times"] and all(t.endswith("UTC+08:00") and t[:2] == "20" for t in got["times"])
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if SHOTS is not None:
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, SHOTS / shot.name)
    assert "No face was found in pattern.mp4" in page
    assert 'alt="the frames of pattern-20260101-000500.000-ffffff that were analysed"' in page


def test_times_are_written_with_date_and_zone_without_a_browser(root: Path, tmp_path: Path) -> None:
    busy_share.build(root)
    env = {**os.environ, "TZ": "America/New_York"}
    script = ("from pathlib import Path\nfrom daemon.housekeeping.board import Board\n"
              f"Board(Path({str(root)!r}), 'en', 5.0, 20).write()\n")
    subprocess.run([sys.executable, "-c", script], env=env, check=True,
                   timeout=120)
    page = (root / HTML).read_text()
    stamps = page.split('<time datetime="')[1:]
    assert len(stamps) >= 3  # updated, finished (done), finished (failed)
    for stamp in stamps:
        iso, shown = stamp.split('"', 1)[0], stamp.split(">", 1)[1].split("<", 1)[0]
        assert iso[-6:] in ("-05:00", "-04:00") and shown.endswith(f"UTC{iso[-6:]}") and shown[:4] == iso[:4]


def test_worker_memory_the_watchdog_read_is_on_the_page_and_in_status(root: Path) -> None:
    busy_share.build(root)
    path = root / ".lipsyncd" / "roles" / "watchdog.json"
    status = atomic.read_json(path)
    status["share"] = {"beats": {"gpuhost--gpu0": {"rss_bytes": 2_500_000_000, "fps": 24.5}}}
    atomic.write_json(path, status)
    Board(root, "en", 5.0, 20).write()
    page = (root / HTML).read_text()
    workers = page.split('id="workers"', 1)[1].split("</table>", 1)[0]
    assert "Memory (RAM)" in workers and "2.5 GB" in workers
    text = subprocess.run([sys.executable, "-m", "daemon", "--root", str(root), "status"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "140"}).stdout
    gpu0 = next(line for line in text.splitlines() if "gpuhost/gpu0" in line and "heartbeat" in line)
    assert gpu0.rstrip().endswith("RAM 2.5 GB")
