"""The watchdog's dependency rules: it imports daemon.core only, HTTP lives in the robots' poster, no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SENTINEL = Path(__file__).resolve().parents[1] / "daemon" / "sentinel"


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_sentinel_imports_only_core_and_itself_and_http_only_in_robots() -> None:
    paths = sorted(SENTINEL.rglob("*.py"))
    assert SENTINEL / "alerts" / "robots" / "poster.py" in paths
    for path in paths:
        found = imports(path)
        ours = {n for n in found if n.startswith("daemon")}
        assert all(n.startswith(("daemon.core", "daemon.sentinel")) for n in ours), (path.name, ours)
        if path.relative_to(SENTINEL).as_posix() != "alerts/robots/poster.py":
            assert not {n for n in found if n.split(".")[0] in ("requests", "urllib3")}, path.name
    assert not any(p.stem == "watchdog" for p in SENTINEL.rglob("*.py"))


def test_watchdog_starts_without_torch_or_numpy() -> None:
    code = ("import sys, daemon.sentinel.role; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=SENTINEL.parents[1], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_every_sentinel_folder_is_a_package_so_the_wheel_ships_it() -> None:
    folders = {p.parent for p in SENTINEL.rglob("*.py")}
    assert {SENTINEL / "alerts", SENTINEL / "alerts" / "robots", SENTINEL / "managers"} <= folders
    assert [f for f in folders if not (f / "__init__.py").is_file()] == []  # setuptools' find skips them
