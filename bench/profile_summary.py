"""Where a worker's samples went: py-spy's collapsed stacks (bench/appliance.py with $PROFILE_DIR) summed
by thread kind and by the innermost frame of ours or of a library that names the work.

    python3 bench/profile_summary.py PROFILE.txt [--top 25]

A thread is named by the outermost of our functions on its stack (the render loop, a decode reader, an
encoder lane's writer...); its samples are split by the innermost frame whose file is ours, or by the
native library it was in (libc's memcpy, a socket call, torch, CUDA's driver).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>[^()]*)\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";")[1:]:  # the first is "thread (tid)"
        m = _FRAME.match(part)
        out.append((m["func"], m["where"]) if m else (part, ""))
    return out


def ours(where: str) -> bool:
    return where.startswith(("daemon/", "bench/")) or "/daemon/" in where


def thread_kind(stack: list[tuple[str, str]]) -> str:
    mine = [f"{func} ({where.split(':')[0]})" for func, where in stack if ours(where)]
    if not mine:
        natives = [where for _, where in stack if where and ".py" not in where]
        return "native: " + (natives[0] if natives else "?")
    for func, where in stack:  # the thread's target names it better than the outermost frame
        if ours(where) and func in ("_run", "_fill", "_write", "run", "_analyse", "_segment"):
            return f"{func} ({where.split(':')[0]})"
    return mine[min(3, len(mine) - 1)]


def leaf(stack: list[tuple[str, str]]) -> str:
    for func, where in reversed(stack):
        if ours(where):
            inner = stack[-1]
            lib = inner[1] if inner[1] and ".py" not in inner[1] else inner[0]
            return f"{func} ({where}) -> {lib}"
    func, where = stack[-1] if stack else ("?", "")
    return f"{func} ({where})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    by_thread: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        n = int(count_text)
        stack = frames(stack_text)
        total += n
        kind = thread_kind(stack)
        by_thread[kind] += n
        by_leaf[f"[{kind}] {leaf(stack)}"] += n
    print(f"{total} samples")
    for name, n in by_thread.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")
    print()
    for name, n in by_leaf.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
