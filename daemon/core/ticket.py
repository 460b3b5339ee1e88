"""Job tickets: decode what Windows editors save, parse the TOML, validate keys and names, expand batches.

Pure functions over bytes; the filesystem checks (symlinks, sizes) belong to intake. Every problem is a
JobRejected whose message a producer understands.
"""

from __future__ import annotations

import difflib
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from daemon.core import messages, tomlpos
from daemon.core.errors import JobRejected

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# framing keys (upstream inference.py's --fps / --box / --crop): see _framing()
FRAMING_KEYS = ("fps", "face_box", "crop")
KEYS = ("audio", "video", "audios", "videos", "output", "engine", "loop", "max_height", "priority",
        "batch", "options", *FRAMING_KEYS)
LOOP_MODES = ("pingpong", "wrap")
# engine → option → (kind, allowed values or (min, max))
ENGINE_OPTIONS: dict[str, dict[str, tuple[type, Any]]] = {
    "warp": {"strength": (float, (0.0, 3.0))},
    "wav2lip": {"composite": (str, ("feather", "paste")), "smooth": (bool, None)},
    "copy": {},
}
_UNSAFE = re.compile(r"[^\w.\-]+")
# control characters, invisible direction overrides and undecodable bytes (surrogate escapes of a file
# name that is not UTF-8): escaped wherever a name is shown, so a producer sees what is really there
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
MAX_DEPTH = 16  # tables/arrays inside each other; no real ticket goes past 2
MAX_NAME_BYTES = 255  # one path component, as every filesystem producers use allows
MAX_PATH_BYTES = 1024
# names Windows cannot open as files, with or without an extension (CON.mp4 is CON)
WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                              *(f"COM{i}" for i in "123456789"), *(f"LPT{i}" for i in "123456789")})

messages.register({
    "ticket_too_complex": {
        "en": ("The job ticket {ticket} cannot be used: {detail}.",
               "A ticket only names files and a few settings; write it like the examples in the README "
               "and drop it again."),
        "zh": ("任务单 {ticket} 无法使用：{detail}。",
               "任务单只需列出文件名和少量设置，请参照 README 中的示例重写后重新放入。"),
    },
    "ticket_control_char": {
        "en": ("The job ticket {ticket} names '{name}', which contains an invisible control character "
               "(shown here as {chars}).",
               "Rename the file without it (retype the name), fix the ticket, and drop both again."),
        "zh": ("任务单 {ticket} 引用的 '{name}' 中含有不可见的控制字符（此处显示为 {chars}）。",
               "请重新输入文件名（去掉该字符），改好任务单后一起重新放入。"),
    },
})


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
    notes: tuple[str, ...] = ()  # adjustments a producer should hear about (e.g. a renamed output)

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
        try:
            return raw[3:].decode("utf-8", errors="strict"), "utf-8-bom"
        except UnicodeDecodeError:  # a BOM, then bytes that are not UTF-8 (found by the fuzz test)
            raise JobRejected("ticket_encoding", ticket=ticket) from None
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
    data = _load(text, ticket)
    if not data:
        raise JobRejected("ticket_empty", ticket=ticket)
    _check_keys(data, ticket)
    audios = _names(data, "audio", "audios", ticket, nested)
    videos = _names(data, "video", "videos", ticket, nested)
    if len(audios) > 1 and len(videos) > 1:
        raise JobRejected("ticket_no_media", ticket=ticket,
                          detail="a batch has either several audios or several videos, not both")
    named = len(audios) + len(videos)  # what the producer wrote, repeats included
    if named > max_files:
        raise JobRejected("too_many_files", ticket=ticket, count=named, limit=max_files)
    engine = _engine(data, ticket, allowed_engines)
    options = _options(data, ticket, engine)
    stem = PurePosixPath(ticket).stem
    pairs, notes = _pairs(data, audios, videos, stem, ticket)
    return Ticket(name=ticket, encoding=encoding, pairs=pairs, engine=engine, options=options,
                  priority=_int(data, "priority", ticket, -100, 100, 0),
                  batch=printable(_str(data, "batch", ticket) or stem), notes=notes)


def _load(text: str, ticket: str) -> dict[str, Any]:
    """tomllib's answer, or JobRejected for every way it can fail on hostile text.

    Besides TOMLDecodeError, tomllib raises RecursionError on deep nesting and ValueError on integers
    past Python's digit limit; nesting it accepts could still blow the stack of anything that walks
    the data later, so the depth is bounded here, once.
    """
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail, line, column = tomlpos.locate(str(exc), text)
        raise JobRejected("ticket_syntax", ticket=ticket, detail=printable(detail), line=line,
                          column=column) from None
    except RecursionError:
        raise JobRejected("ticket_too_complex", ticket=ticket,
                          detail=f"it nests brackets or tables deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise JobRejected("ticket_too_complex", ticket=ticket, detail=printable(str(exc))[:120]) from None
    if _depth(data) > MAX_DEPTH:
        raise JobRejected("ticket_too_complex", ticket=ticket,
                          detail=f"it nests brackets or tables deeper than {MAX_DEPTH} levels")
    return data


def _depth(data: Any) -> int:
    """Nesting depth of parsed TOML, without recursion (the data may be thousands of levels deep)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def printable(text: str) -> str:
    """`text` with control characters, direction overrides and undecodable bytes escaped (\\x07)."""
    return _HIDDEN.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape of a raw byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def nfc(name: str) -> str:
    """The form names are compared in: macOS writes NFD, most editors NFC."""
    return unicodedata.normalize("NFC", name)


def _check_keys(data: dict[str, Any], ticket: str) -> None:
    for key in data:
        if key not in KEYS:
            close = difflib.get_close_matches(key[:40], KEYS, n=1)
            raise JobRejected("ticket_unknown_key", ticket=ticket, key=_show(key, 60, quote=False),
                              allowed=", ".join(KEYS), hint=f" (did you mean '{close[0]}'?)" if close else "")


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
    shown = _show(name, 120, quote=False)
    if not name.strip():
        raise JobRejected("ticket_bad_name", ticket=ticket, name=shown, why="is empty")
    hidden = sorted({printable(c) for c in name if unicodedata.category(c) in ("Cc", "Cs")})
    if hidden:
        raise JobRejected("ticket_control_char", ticket=ticket, name=shown, chars=" ".join(hidden))
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise JobRejected("ticket_bad_name", ticket=ticket, name=shown, why="is an absolute path")
    parts = PurePosixPath(norm).parts
    if ".." in parts:
        raise JobRejected("ticket_bad_name", ticket=ticket, name=shown, why="points outside the job ('..')")
    if len(parts) > 1 and not nested:
        raise JobRejected("ticket_bad_name", ticket=ticket, name=shown,
                          why="names a sub-folder; a ticket loose in inbox/ can only name files next to it")
    if (len(norm.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES
            or any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts)):
        raise JobRejected("ticket_bad_name", ticket=ticket, name=shown,
                          why=f"is longer than a file name can be ({MAX_NAME_BYTES} bytes)")
    if nfc(PurePosixPath(norm).name) == nfc(PurePosixPath(ticket).name):
        raise JobRejected("ticket_bad_name", ticket=ticket, name=shown, why="is the ticket itself")
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
    out.update(_framing(data, ticket))
    extra = data.get("options", {})
    if not isinstance(extra, dict):
        raise JobRejected("ticket_bad_value", ticket=ticket, key="options", expected="a table", got=_show(extra))
    schema = ENGINE_OPTIONS.get(engine or "", {})
    for key, value in extra.items():
        if key not in schema:
            allowed = ", ".join(schema) or "none for this engine"
            raise JobRejected("ticket_unknown_key", ticket=ticket, key=f"options.{_show(key, 40, quote=False)}",
                              allowed=allowed, hint="")
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


def _pairs(data: dict[str, Any], audios: list[str], videos: list[str], stem: str,
           ticket: str) -> tuple[tuple[Pair, ...], tuple[str, ...]]:
    asked = _str(data, "output", ticket)
    if asked is not None:
        asked = check_name(asked, ticket, nested=False)
        asked = asked[:-4] if asked.lower().endswith(".mp4") else asked
    base, notes = windows_safe(safe_stem(asked or stem))
    if asked is not None and base != asked:
        notes = (f"output name '{printable(asked)}.mp4' was written as '{base}.mp4' "
                 "(only letters, digits, '-', '_' and '.' are kept, and Windows must be able to open it)",)
    if len(audios) == 1 and len(videos) == 1:
        return (Pair(audios[0], videos[0], f"{base}.mp4"),), notes
    varying = audios if len(audios) > 1 else videos
    pairs = []
    for i, name in enumerate(varying, 1):
        audio = name if len(audios) > 1 else audios[0]
        video = name if len(videos) > 1 else videos[0]
        pairs.append(Pair(audio, video, f"{base}__{i:02d}_{safe_stem(PurePosixPath(name).stem)}.mp4"))
    return tuple(pairs), notes


def windows_safe(stem: str) -> tuple[str, tuple[str, ...]]:
    """`stem` changed so Windows can open `<stem>.mp4` (CON, AUX, NUL, COM1...), and what changed."""
    if stem.split(".", 1)[0].upper() not in WINDOWS_RESERVED:
        return stem, ()
    fixed = f"{stem}_"
    return fixed, (f"output name '{stem}.mp4' is a device name Windows cannot open; written as '{fixed}.mp4'",)


def safe_stem(text: str, limit: int = 60) -> str:
    """A name usable in job ids and file names on every share (no @, no separators, no leading or
    trailing dot, no trailing space: Windows drops those)."""
    cleaned = _UNSAFE.sub("_", nfc(text)).strip("._") or "job"  # NFC: a macOS name keeps its accents
    return cleaned[:limit].rstrip("._") or "job"


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


def _show(value: Any, limit: int = 60, quote: bool = True) -> str:
    """A value as a producer can read it: short, with hidden characters escaped."""
    text = printable(repr(value) if quote else str(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _framing(data: dict[str, Any], ticket: str) -> dict[str, Any]:
    """`fps` (force an output rate; a still's rate), `face_box` and `crop` = [top, bottom, left, right]
    in pixels of the presenter as a player shows it (face_box: of the cropped picture when both are given)."""
    out: dict[str, Any] = {}
    if "fps" in data:
        value = data["fps"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 120:
            raise JobRejected("ticket_bad_value", ticket=ticket, key="fps", expected="a number from 1 to 120",
                              got=_show(value))
        out["fps"] = float(value)
    for key in ("face_box", "crop"):
        if key in data:
            out[key] = _rectangle(data[key], key, ticket)
    return out


def _rectangle(value: Any, key: str, ticket: str) -> list[int]:
    """[top, bottom, left, right], whole pixels; -1 for bottom/right means the picture's edge (--crop)."""
    expected = "[top, bottom, left, right] in pixels, e.g. [120, 400, 200, 460]"
    ok = isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, int) and not isinstance(v, bool) and -1 <= v <= 16384 for v in value)
    if ok:
        top, bottom, left, right = value
        ok = top >= 0 and left >= 0 and (bottom == -1 or bottom > top) and (right == -1 or right > left)
        ok = ok and (key == "crop" or -1 not in (bottom, right))
    if not ok:
        raise JobRejected("ticket_bad_value", ticket=ticket, key=key, expected=expected, got=_show(value))
    return list(value)
