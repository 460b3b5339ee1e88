"""The watchdog on a broken config.toml: start on what can still be read, and say so once in chat.

When the config is broken every role would exit 78 and nobody would hear of it. The watchdog instead
keeps the sections it can read ([share], [general], [alerts*], [watchdog], each parsed on its own, so a
syntax error elsewhere costs only its own section), falls back to the robots' settings alone, then to
the environment and built-in defaults (LIPSYNCD_ALERTS_* variables and alerts.secrets_file still work),
and raises one "configuration error: <file, line, column>" alert. Intake and workers still exit 78.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from daemon.core.config import Config, find_config_file
from daemon.core.errors import ConfigError
from daemon.core.settings import build

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

log = logging.getLogger(__name__)

WANTED = ("share", "general", "alerts", "watchdog")  # a table name or its prefix (alerts.dingtalk)
_HEADER = re.compile(r"^\s*\[+\s*([A-Za-z0-9_.\-]+)")


def readable_sections(text: str) -> dict[str, object]:
    """The wanted top-level tables of `text` that parse on their own; broken or unwanted ones dropped."""
    pieces: list[tuple[str, list[str]]] = [("", [])]
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            pieces.append((match.group(1).split(".")[0], []))
        pieces[-1][1].append(line)
    merged: dict[str, object] = {}
    for name, lines in pieces:
        if name not in WANTED:
            continue
        try:
            part = tomllib.loads("\n".join(lines))
        except tomllib.TOMLDecodeError:
            continue
        _merge(merged, part)
    return merged


def _merge(into: dict[str, object], part: Mapping[str, object]) -> None:
    for key, value in part.items():
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value)
        else:
            into[key] = value


def fallback_config(explicit_path: str | None, root: str | None, env: Mapping[str, str] | None = None) -> Config:
    """The best Config the watchdog can run on when load_config() failed."""
    env = os.environ if env is None else env
    try:
        path = find_config_file(explicit_path, env)
        text = path.read_bytes().decode("utf-8-sig", "replace") if path else ""
    except (ConfigError, OSError):
        path, text = None, ""
    sections = readable_sections(text)
    attempts: tuple[dict[str, Any], ...] = (sections, {k: v for k, v in sections.items() if k in ("share", "alerts")},
                {k: v for k, v in sections.items() if k == "alerts"}, {})
    config = Config()
    for data in attempts:
        try:
            config = build(Config, data, env, (), f"{path} (readable part)" if path else "defaults")
            break
        except ConfigError as exc:
            log.warning("fallback config: %s", exc)
            continue
    override = root or env.get("LIPSYNCD_ROOT")
    if override:
        config = replace(config, share=replace(config.share, root=override))
    return config



def run_on_broken_config(args: object, error: ConfigError) -> int:
    """`lipsyncd watchdog` whose config did not load: watch and alert on the fallback config."""
    from daemon.core import logs
    from daemon.sentinel.role import run

    config = fallback_config(getattr(args, "config", None), getattr(args, "root", None))
    logs.setup("watchdog", getattr(args, "log_level", None) or config.general.log_level)
    log.error("configuration error: %s; watching %s on what could be read, until the config is fixed and "
              "the watchdog restarted", error, config.root)
    return run(config, None, config_error=str(error))
