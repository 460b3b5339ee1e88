"""`lipsyncd config`: the effective configuration as TOML (defaults, file, environment and --root merged),
each value annotated with where it came from; secrets are masked."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from daemon.core.config import Config, find_config_file, read_toml
from daemon.core.settings import effective


def show(config: Config, args: argparse.Namespace) -> int:
    path = find_config_file(getattr(args, "config", None), os.environ)
    rows = effective(config, read_toml(path) if path else {}, os.environ)
    rows = [_root_origin(row, args) for row in rows]
    if getattr(args, "json", False):
        json.dump({".".join(p): {"value": v, "from": o} for p, v, o in rows}, sys.stdout, ensure_ascii=False,
                  indent=2)
        print()
        return 0
    out = [f"# effective lipsyncd configuration; file: {path or 'none (built-in defaults)'}; secrets masked"]
    table: tuple[str, ...] | None = None
    for key, value, origin in rows:
        if key[:-1] != table:
            table = key[:-1]
            out += ["", f"[{'.'.join(table)}]"]
        note = "" if origin == "default" else f"  # from {origin}"
        out.append(f"{key[-1]} = {_toml(value)}{note}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _root_origin(row: tuple[tuple[str, ...], Any, str], args: argparse.Namespace) -> tuple[tuple[str, ...], Any, str]:
    key, value, origin = row
    if key == ("share", "root"):
        if getattr(args, "root", None):
            origin = "--root"
        elif os.environ.get("LIPSYNCD_ROOT"):
            origin = "LIPSYNCD_ROOT"
    return key, value, origin


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a valid TOML basic string
