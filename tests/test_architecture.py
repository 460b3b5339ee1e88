"""The package's rooms and who may import whom, read from the source (every import, at any depth).

The rooms: `daemon/core/` (stdlib only: shared by every role), the roles `intake/`, `worker/`,
`sentinel/` (the watchdog) and `housekeeping/` (the share's status pages), which import core and never
each other, and the shell (`daemon/*.py`: cli, tasks, doctor, launcher...; `daemon/skel/`, the files
`lipsyncd init` writes) which may import everything.
torch lives only under `daemon/worker/engines/`; outbound HTTP (`requests`, `urllib.request`) only in
`daemon/sentinel/alerts/robots/poster.py` (supervisord's XML-RPC over its unix socket uses `http.client`, which is
local process-manager talk, not HTTP to the outside).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "daemon"
ROLES = ("intake", "worker", "sentinel", "housekeeping")
HTTP = ("requests", "urllib.request")
HTTP_MODULE = "daemon.sentinel.alerts.robots.poster"  # the chat robots' one HTTP post
STDLIB = sys.stdlib_module_names | {"tomli"}  # tomli: the stdlib's tomllib, on Python 3.10

# Known violations, each named exactly so a new one still fails; fixing one makes the stale check fail
# until its line here goes. (module, imported name): why it is not fixed yet. None are left.
KNOWN: dict[tuple[str, str], str] = {}


def _imports() -> list[tuple[str, str]]:
    """(importing module, imported absolute name) for every import in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(module, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.append((module, node.module))
            elif isinstance(node, ast.ImportFrom):
                raise AssertionError(f"{module}: relative import; the package imports absolutely")
    return found


IMPORTS = _imports()


def _room(module: str) -> str:
    """core, a role's name, or 'shell' for the top-level modules (skel, the shipped files, is shell too)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("core", *ROLES) else "shell"


def _violations(rule: str) -> list[tuple[str, str]]:
    bad = []
    for module, name in IMPORTS:
        top = name.split(".")[0]
        room = _room(module)
        if rule == "core" and room == "core":
            wrong = top != "daemon" and top not in STDLIB or (
                top == "daemon" and _room(name) != "core")
        elif rule == "roles" and room in ROLES:
            wrong = top == "daemon" and _room(name) not in ("core", room)
        elif rule == "torch":
            wrong = top == "torch" and not module.startswith("daemon.worker.engines.")
        elif rule == "http":
            wrong = any(name == h or name.startswith(h + ".") for h in HTTP) and module != HTTP_MODULE
        else:
            wrong = False
        if wrong and (module, name) not in KNOWN:
            bad.append((module, name))
    return bad


def test_the_rooms_are_the_ones_this_file_names() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert rooms == {"core", "skel", *ROLES}, "a new room: name its import rule here"


@pytest.mark.parametrize("rule", ["core", "roles", "torch", "http"])
def test_imports_keep_to_their_rooms(rule: str) -> None:
    assert _violations(rule) == []


def test_every_role_imports_core() -> None:
    for role in ROLES:
        assert any(_room(m) == role and n.startswith("daemon.core") for m, n in IMPORTS), role


def test_known_violations_still_exist() -> None:
    """A fixed violation leaves KNOWN, so the list never hides a new one under an old name."""
    assert [pair for pair in KNOWN if pair not in IMPORTS] == []
