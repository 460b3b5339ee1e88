"""The operator's files that ship with the package: the commented config.toml, the systemd units and the
supervisord program file; `lipsyncd init [DIR]` writes them out, `lipsyncd init --print NAME` shows one.

A wheel carries them in this package folder (setup.py copies them in at build time); a source checkout
(an editable install) reads them from the top of the checkout, where they are maintained.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
TOP = ("config.toml", "systemd", "supervisor")
EXIT_CANTCREAT = 73  # sysexits EX_CANTCREAT: an output file exists (we never overwrite) or cannot be made
# the paths the shipped units and program file assume; rewritten to this install's when they differ
SHIPPED_EXE = "/opt/lipsyncd/venv/bin/lipsyncd"
SHIPPED_ETC = "/etc/lipsyncd/"


def source() -> Path:
    """The folder holding config.toml, systemd/ and supervisor/ for this install."""
    return HERE if (HERE / "config.toml").is_file() else CHECKOUT


def names() -> list[str]:
    """Every shipped file, relative: config.toml, systemd/..., supervisor/... (sorted)."""
    base, out = source(), []
    for top in TOP:
        path = base / top
        if path.is_file():
            out.append(top)
        elif path.is_dir():
            out += sorted(f"{top}/{p.name}" for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return out


def text(name: str, target: Path | None = None) -> str:
    """One shipped file; units and the program file get this install's executable and config folder."""
    body = (source() / name).read_text(encoding="utf-8")
    if name.startswith(("systemd/", "supervisor/")) and not name.endswith("README.md"):
        body = body.replace(SHIPPED_EXE, executable())
        if target is not None:
            body = body.replace(SHIPPED_ETC, f"{target.resolve()}/")
    return body


def executable() -> str:
    """The `lipsyncd` console script of the running interpreter's environment, else the shipped path."""
    beside = Path(sys.executable).parent / "lipsyncd"
    return str(beside) if beside.is_file() else shutil.which("lipsyncd") or SHIPPED_EXE


def init(args: argparse.Namespace) -> int:
    """`lipsyncd init [DIR]`: write every file under DIR, or none of them if any already exists."""
    if args.print:
        if args.print not in names():
            print(f"lipsyncd: no shipped file {args.print!r}; there are: {', '.join(names())}", file=sys.stderr)
            return 2
        sys.stdout.write(text(args.print))
        return 0
    target = Path(args.dir)
    planned = {name: target / name for name in names()}
    present = [str(p) for p in planned.values() if p.exists() or p.is_symlink()]
    if present:
        print(f"lipsyncd: not overwriting {', '.join(present)}: move them away or pick another folder "
              "(nothing was written)", file=sys.stderr)
        return EXIT_CANTCREAT
    for name, path in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as out:  # "x": a file that appeared meanwhile is not replaced
            out.write(text(name, target))
        print(f"wrote {path}")
    print(_next_steps(target))
    return 0


def _next_steps(target: Path) -> str:
    etc = target.resolve()
    return (f"next: set share.root, the engine and the chat robots in {etc / 'config.toml'}, run "
            f"`lipsyncd --config {etc / 'config.toml'} doctor`, then install the units from {etc / 'systemd'} "
            f"(see its README.md) or {etc / 'supervisor' / 'lipsyncd.conf'} for supervisord")
