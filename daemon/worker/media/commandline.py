"""ffmpeg command lines, built with ffmpeg-python and compiled to an argv list.

ffmpeg-python is the project's way to *build* command lines: its graph nodes quote and label filter
chains (`-filter_complex`, `-map [sN]`) so no caller splices filter strings by hand. It never runs
anything here: the argv goes to our own process code (daemon/worker/media/process.py), because its
run/probe helpers deadlock once ffmpeg's stderr fills the pipe (reference/media.md §1.3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ffmpeg

# first on every command line: no stdin, no banner, no progress lines, errors only on stderr
QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error", "-nostats")


@dataclass(frozen=True)
class Filter:
    """One filter of a chain: `name=arg:arg:key=value`."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The filter as a person reads it, unescaped (for logs; argv() escapes what ffmpeg parses)."""
        parts = [str(a) for a in self.args] + [f"{k}={v}" for k, v in self.kwargs.items()]
        return self.name + ("=" + ":".join(parts) if parts else "")


def chain_text(filters: Sequence[Filter]) -> str:
    return ",".join(f.text() for f in filters)


def source(path: str, stream: int | str | None = None, **options: Any) -> Any:
    """An input (options become `-key value` before `-i`), or one stream of it (`[0:N]`)."""
    node = ffmpeg.input(path, **options)
    return node if stream is None else node[str(stream)]


def apply(stream: Any, filters: Sequence[Filter]) -> Any:
    for f in filters:
        stream = stream.filter(f.name, *f.args, **f.kwargs)
    return stream


def argv(tool: str, output: Any, head: Sequence[str] = QUIET) -> list[str]:
    """[tool, *head, *what ffmpeg-python compiles]: global options first, where ffmpeg expects them."""
    return [tool, *head, *output.get_args()]


def output(stream: Any, target: str, options: Mapping[str, Any]) -> Any:
    """An output; `options` keyed as ffmpeg spells them ("frames:v": 9 → `-frames:v 9`; None → a bare
    flag such as `-an`)."""
    return ffmpeg.output(stream, target, **options)
