"""One Share value names every share folder: its paths are where the layout says, and no other module
spells one by hand (the `.lipsyncd` literal, or `<path> / "<share folder>"`), read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

from daemon.core.share import INTERNAL, STATE_FOLDERS, Share
from daemon.core.state import FOLDER_STATES

PACKAGE = Path(__file__).resolve().parents[1] / "daemon"
SHARE_MODULE = PACKAGE / "core" / "share.py"
INTERNAL_NAMES = ("workers", "roles", "control", "intake", "keys", "logs", "tmp", "outbox", "trash", "facecache")

# Hand-built paths left in files that other parts of issue 18 reshape at the same time: each becomes the
# Share attribute there once those land. Named by expression (files may move), so a new one still fails
# and a fixed one makes the stale check fail until its line here goes.
KNOWN = {
    "internal / 'workers'": "core/heartbeat.py folder(): takes the internal folder, not a Share",
    "internal / 'roles'": "sentinel/status.py write_json(): takes the internal folder, not a Share",
    "internal / 'control'": "sentinel/upcontrol.py UpControl: takes the internal folder, not a Share",
    "internal_dir / 'facecache'": "worker/pipeline.py ChunkedRenderer: takes the internal folder, not a Share",
}


def _hand_built() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == SHARE_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value == INTERNAL or node.value.startswith(f"{INTERNAL}/")):
                found.append((path.relative_to(PACKAGE).as_posix(), node.lineno, repr(node.value)))
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                    and isinstance(node.right, ast.Constant) and node.right.value in (*STATE_FOLDERS, *INTERNAL_NAMES):
                found.append((path.relative_to(PACKAGE).as_posix(), node.lineno, ast.unparse(node)))
    return found


def test_no_module_but_share_spells_a_share_path() -> None:
    assert [f for f in _hand_built() if f[2] not in KNOWN] == []


def test_known_hand_built_paths_still_exist() -> None:
    assert sorted(set(KNOWN) - {f[2] for f in _hand_built()}) == []


def test_the_named_paths_are_the_documented_layout(tmp_path: Path) -> None:
    share = Share(tmp_path)
    states = (share.inbox, share.staging, share.processing, share.done, share.failed)
    assert [p.relative_to(tmp_path).as_posix() for p in states] == list(STATE_FOLDERS) == [
        "inbox", "staging", "processing", "done", "failed"]
    internal = [getattr(share, name) for name in INTERNAL_NAMES]
    assert [p.relative_to(tmp_path).as_posix() for p in internal] == [f".lipsyncd/{n}" for n in INTERNAL_NAMES]
    assert share.transaction("t1") == tmp_path / ".lipsyncd" / "intake" / "t1"
    assert share.is_internal(".lipsyncd/intake/t1/j1/inputs/a.wav") and not share.is_internal("inbox/.lipsyncd")


def test_prepare_makes_the_folders_every_role_writes_at_start(root: Path) -> None:
    share = Share(root)
    share.prepare()
    assert all(p.is_dir() for p in (*(share.folder(s) for s in FOLDER_STATES), *share.made_at_start))
