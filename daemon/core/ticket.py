"""Job tickets: decode what Windows editors save, parse the TOML, validate keys and names, expand batches.

Pure functions over bytes; the filesystem checks (symlinks, sizes) belong to intake. Every problem is a
JobRejected whose message a producer understands.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from daemon.core import tomlpos
from daemon.core.errors import JobRejected

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYS = ("audio", "video", "audios", "videos", "output", "engine", "loop", "max_height", "priority",
        "batch", "options")
LOOP_MODES = ("pingpong", "wrap")
# engine → option → (kind, allowed values or (min, max))
ENGINE_OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    "warp": {"strength": (float, (0.0, 3.0))},
    "wav2lip": {"composite": (str, ("feather", "paste")), "smooth": (bool, None)},
    "copy": {},
}
_UNSAFE = re.compile(r"[^\w.\-]+")


@dataclass(frozen=True)
class Pair:
    audio: str
    video: str
    output: str


@dataclass(frozen=True)
class Ticket:
    name: str  # ticket file name
    encoding: str
    pairs: tuple[Pair, ...]
    engine: str | None
    options: dict[str, Any] = field(default_factory=dict)  # loop, max_height, engine options
    priority: int = 0
    batch: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for pair in self.pairs:
            seen.setdefault(pair.audio)
            seen.setdefault(pair.video)
        return tuple(seen)


def decode(raw: bytes, ticket: str) -> tuple[str, str]:
    """(text, encoding name) of a ticket saved by any common editor; JobRejected if not text."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="strict"), "utf-8-bom"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise JobRejected("ticket_encoding", ticket=ticket) from None
    if b"\x00" in raw:
        raise JobRejected("ticket_encoding", ticket=ticket)
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise JobRejected("ticket_encoding", ticket=ticket)


def parse(raw: bytes, ticket: str, *, allowed_engines: tuple[str, ...], max_files: int,
          nested: bool) -> Ticket:
    """Validate a ticket; `nested` allows sub-paths (a job folder), else only plain file names."""
    text, encoding = decode(raw, ticket)
    if not text.strip():
        raise JobRejected("ticket_empty", ticket=ticket)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail, line, column = tomlpos.locate(str(exc), text)
        raise JobRejected("ticket_syntax", ticket=ticket, detail=detail, line=line, column=column) from None
    if not data:
        raise JobRejected("ticket_empty", ticket=ticket)
    _check_keys(data, ticket)
    audios = _names(data, "audio", "audios", ticket, nested)
    videos = _names(data, "video", "videos", ticket, nested)
    if len(audios) > 1 and len(videos) > 1:
        raise JobRejected("ticket_no_media", ticket=ticket,
                          detail="a batch has either several audios or several videos, not both")
    if len(set(audios) | set(videos)) + 1 > max_files:
        raise JobRejected("too_many_files", ticket=ticket, count=len(audios) + len(videos) + 1,
                          limit=max_files)
    engine = _engine(data, ticket, allowed_engines)
    options = _options(data, ticket, engine)
    stem = PurePosixPath(ticket).stem
    return Ticket(name=ticket, encoding=encoding, pairs=_pairs(data, audios, videos, stem, ticket),
                  engine=engine, options=options, priority=_int(data, "priority", ticket, -100, 100, 0),
                  batch=_str(data, "batch", ticket) or stem)


def _check_keys(data: dict[str, Any], ticket: str) -> None:
    for key in data:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            raise JobRejected("ticket_unknown_key", ticket=ticket, key=key, allowed=", ".join(KEYS),
                              hint=f" (did you mean '{close[0]}'?)" if close else "")


def _names(data: dict[str, Any], one: str, many: str, ticket: str, nested: bool) -> list[str]:
    if one in data and many in data:
        raise JobRejected("ticket_no_media", ticket=ticket, detail=f"use either '{one}' or '{many}', not both")
    if one in data:
        values = [data[one]]
        if not isinstance(data[one], str):
            raise JobRejected("ticket_bad_value", ticket=ticket, key=one, expected="a file name in quotes",
                              got=_show(data[one]))
    elif many in data:
        values = data[many]
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise JobRejected("ticket_bad_value", ticket=ticket, key=many,
                              expected="a list of file names, e.g. [\"a.mp4\", \"b.mp4\"]", got=_show(values))
    else:
        raise JobRejected("ticket_no_media", ticket=ticket, detail=f"no '{one}' given")
    return [check_name(v, ticket, nested) for v in values]


def check_name(name: str, ticket: str, nested: bool) -> str:
    """A file name from a ticket, normalised; rejects anything that could leave the job's folder."""
    if not name.strip() or "\x00" in name:
        raise JobRejected("ticket_bad_name", ticket=ticket, name=name, why="is empty")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise JobRejected("ticket_bad_name", ticket=ticket, name=name, why="is an absolute path")
    parts = PurePosixPath(norm).parts
    if ".." in parts:
        raise JobRejected("ticket_bad_name", ticket=ticket, name=name, why="points outside the job ('..')")
    if len(parts) > 1 and not nested:
        raise JobRejected("ticket_bad_name", ticket=ticket, name=name,
                          why="names a sub-folder; a ticket loose in inbox/ can only name files next to it")
    if PurePosixPath(norm).name == PurePosixPath(ticket).name:
        raise JobRejected("ticket_bad_name", ticket=ticket, name=name, why="is the ticket itself")
    return str(PurePosixPath(*parts))


def _engine(data: dict[str, Any], ticket: str, allowed: tuple[str, ...]) -> str | None:
    engine = _str(data, "engine", ticket)
    if engine is not None and engine not in allowed:
        raise JobRejected("ticket_engine_not_allowed", ticket=ticket, engine=engine, allowed=", ".join(allowed))
    return engine


def _options(data: dict[str, Any], ticket: str, engine: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    loop = _str(data, "loop", ticket)
    if loop is not None:
        if loop not in LOOP_MODES:
            raise JobRejected("ticket_bad_value", ticket=ticket, key="loop", expected=" or ".join(LOOP_MODES),
                              got=_show(loop))
        out["loop"] = loop
    if "max_height" in data:
        out["max_height"] = _int(data, "max_height", ticket, 64, 4320, 0)
    extra = data.get("options", {})
    if not isinstance(extra, dict):
        raise JobRejected("ticket_bad_value", ticket=ticket, key="options", expected="a table", got=_show(extra))
    schema = ENGINE_OPTIONS.get(engine or "", {})
    for key, value in extra.items():
        if key not in schema:
            allowed = ", ".join(schema) or "none for this engine"
            raise JobRejected("ticket_unknown_key", ticket=ticket, key=f"options.{key}", allowed=allowed, hint="")
        out[key] = _option_value(key, value, schema[key], ticket)
    return out


def _option_value(key: str, value: Any, rule: tuple[type, Any], ticket: str) -> Any:
    kind, allowed = rule
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if ok and isinstance(allowed, tuple) and kind is str:
        ok = value in allowed
    if ok and isinstance(allowed, tuple) and kind in (int, float):
        ok = allowed[0] <= value <= allowed[1]
    if not ok:
        expected = kind.__name__ if allowed is None else f"{kind.__name__} in {allowed}"
        raise JobRejected("ticket_bad_value", ticket=ticket, key=f"options.{key}", expected=expected,
                          got=_show(value))
    return value


def _pairs(data: dict[str, Any], audios: list[str], videos: list[str], stem: str, ticket: str) -> tuple[Pair, ...]:
    base = _str(data, "output", ticket)
    if base is not None:
        base = check_name(base, ticket, nested=False)
        base = base[:-4] if base.lower().endswith(".mp4") else base
    base = safe_stem(base or stem)
    if len(audios) == 1 and len(videos) == 1:
        return (Pair(audios[0], videos[0], f"{base}.mp4"),)
    varying = audios if len(audios) > 1 else videos
    pairs = []
    for i, name in enumerate(varying, 1):
        audio = name if len(audios) > 1 else audios[0]
        video = name if len(videos) > 1 else videos[0]
        pairs.append(Pair(audio, video, f"{base}__{i:02d}_{safe_stem(PurePosixPath(name).stem)}.mp4"))
    return tuple(pairs)


def safe_stem(text: str, limit: int = 60) -> str:
    """A name usable in job ids and file names on every share (no @, no separators, no leading dot)."""
    cleaned = _UNSAFE.sub("_", text).strip("._") or "job"
    return cleaned[:limit]


def _str(data: dict[str, Any], key: str, ticket: str) -> str | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise JobRejected("ticket_bad_value", ticket=ticket, key=key, expected="text in quotes", got=_show(value))
    return value


def _int(data: dict[str, Any], key: str, ticket: str, lo: int, hi: int, default: int) -> int:
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise JobRejected("ticket_bad_value", ticket=ticket, key=key, expected=f"a whole number from {lo} to {hi}",
                          got=_show(value))
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
