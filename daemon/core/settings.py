"""The generic machinery behind config: frozen dataclass sections built and validated from TOML and env.

A section is a frozen dataclass; each field's type and `setting(...)` metadata (choices, bounds) are the
whole schema, so adding a key is adding one field. Nested dataclasses are nested TOML tables.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from daemon.core.errors import ConfigError

T = TypeVar("T")

ENV_PREFIX = "LIPSYNCD"


def setting(
    default: Any,
    *,
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,  # noqa: A002 - reads naturally at the call site
    max: float | None = None,  # noqa: A002
    secret: bool = False,
) -> Any:
    """A dataclass field with validation metadata; mutable defaults (lists) become tuples."""
    if isinstance(default, list):
        default = tuple(default)
    meta = {"choices": choices, "min": min, "max": max, "secret": secret}
    return dataclasses.field(default=default, metadata=meta)


def env_name(path: tuple[str, ...]) -> str:
    return "_".join((ENV_PREFIX, *(p.upper() for p in path)))


def build(cls: type[T], data: Mapping[str, Any], env: Mapping[str, str], path: tuple[str, ...],
          origin: str) -> T:
    """Build section `cls` from its TOML table `data`, environment overrides winning over the file."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(path, origin)}: must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{_where((*path, key), origin)}: unknown key{hint}; "
                              f"allowed: {', '.join(names)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind = hints[f.name]
        sub = (*path, f.name)
        if dataclasses.is_dataclass(kind):
            values[f.name] = build(kind, data.get(f.name, {}), env, sub, origin)  # type: ignore[arg-type]
            continue
        name = env_name(sub)
        if name in env:
            raw: Any = _from_env(env[name], kind, sub, name)
            where = f"environment variable {name}"
        elif f.name in data:
            raw, where = data[f.name], _where(sub, origin)
        else:
            continue
        values[f.name] = _check(raw, kind, f.metadata, sub, where)
    try:
        section = cls(**values)
    except ConfigError:
        raise
    validate = getattr(section, "validate", None)
    if validate is not None:
        validate()
    return section


def leaves(cls: type, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any, Any]]:
    """Every (key path, type, field) under `cls`, for docs, `doctor` and tests."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[tuple[str, ...], Any, Any]] = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out.extend(leaves(kind, (*path, f.name)))  # type: ignore[arg-type]
        else:
            out.append(((*path, f.name), kind, f))
    return out


def _where(path: tuple[str, ...], origin: str) -> str:
    return f"{origin}: {'.'.join(path)}"


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0])}"
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}.get(kind, str(kind))


def _check(value: Any, kind: Any, meta: Mapping[str, Any], path: tuple[str, ...], where: str) -> Any:
    value = _coerce(value, kind, where)
    choices = meta.get("choices")
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if choices is not None and item not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"{where} = {item!r}: must be one of {allowed}")
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and item < lo:
            raise ConfigError(f"{where} = {item!r}: must be at least {lo}")
        if hi is not None and item > hi:
            raise ConfigError(f"{where} = {item!r}: must be at most {hi}")
    return value


def _coerce(value: Any, kind: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: must be {_describe(kind)}")
        (item_kind, *_rest) = typing.get_args(kind)
        return tuple(_coerce(v, item_kind, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unions are not supported in settings ({where})")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where} = {value!r}: must be {_describe(kind)}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where} = {value!r}: must be {_describe(kind)}")
    return value


def _from_env(text: str, kind: Any, path: tuple[str, ...], name: str) -> Any:
    where = f"environment variable {name}"
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if typing.get_origin(kind) is tuple:
            (item_kind, *_rest) = typing.get_args(kind)
            parts = [p.strip() for p in text.split(",") if p.strip()]
            return tuple(_from_env(p, item_kind, path, name) for p in parts)
    except ValueError:
        raise ConfigError(f"{where} = {text!r}: must be {_describe(kind)}") from None
    return text


def unknown_env(cls: type, env: Mapping[str, str], also: tuple[str, ...] = ()) -> list[str]:
    """One warning per `LIPSYNCD_*` variable that names no setting (a typo is otherwise silently ignored)."""
    known = {env_name(path) for path, _kind, _f in leaves(cls)} | set(also)
    out = []
    for name in sorted(n for n in env if n.startswith(ENV_PREFIX + "_") and n not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"environment variable {name} is not a lipsyncd setting and is ignored{hint}")
    return out


MASK = "********"


def effective(section: Any, data: Mapping[str, Any], env: Mapping[str, str]) -> list[tuple[tuple[str, ...], Any, str]]:
    """(key path, value, origin) for every setting in `section`; secret values that are set are masked.

    origin is "default", "file" or the environment variable's name, so an operator sees what won.
    """
    out = []
    for path, _kind, f in leaves(type(section)):
        value: Any = section
        table: Any = data
        for part in path:
            value = getattr(value, part)
            table = table.get(part, {}) if isinstance(table, Mapping) else {}
        name = env_name(path)
        # a key the file sets leaves `table` at its (scalar or list) value; a missing one at {}
        origin = name if name in env else "default" if isinstance(table, Mapping) else "file"
        if f.metadata.get("secret") and value:
            value = MASK
        out.append((path, value, origin))
    return out
