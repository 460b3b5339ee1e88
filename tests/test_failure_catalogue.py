"""Every failure code the package raises has a message in each catalogue language (en, zh)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from daemon.core import messages

PACKAGE = Path(__file__).resolve().parents[1] / "daemon"


def _literals(node: ast.expr | None, where: str) -> list[str]:
    """The codes an argument can be: a string, or either side of `a if cond else b`."""
    if isinstance(node, ast.IfExp):
        return _literals(node.body, where) + _literals(node.orelse, where)
    assert isinstance(node, ast.Constant) and isinstance(node.value, str), f"{where}: a code this test cannot read"
    return [node.value]


def _raised_codes() -> dict[str, str]:
    """code -> the module that raises it, for every JobRejected(<literal code>, ...) in the source."""
    codes = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "JobRejected"):
                module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
                for code in _literals(node.args[0] if node.args else None, f"{path}:{node.lineno}"):
                    codes[code] = module
    return codes


def test_every_raised_code_has_both_languages() -> None:
    codes = _raised_codes()
    assert len(codes) > 10  # the walk found the package's codes
    for module in set(codes.values()):
        importlib.import_module(module)  # modules register their own codes at import time
    missing = []
    for code, module in sorted(codes.items()):
        entry = messages._CATALOG.get(code, {})
        for language in messages.LANGUAGES:
            what, todo = entry.get(language, ("", ""))
            if not what.strip() or not todo.strip():
                missing.append(f"{code} ({module}): {language}")
    assert missing == []
    assert messages.LANGUAGES == ("en", "zh")
