"""Where a TOML syntax error is, as line and column, for error.txt and config messages.

tomllib names "(at line L, column C)" for most errors, but an error at the very end of the text
(an unterminated string, a key with no value, a ticket cut short by a slow copy) only says
"(at end of document)": there the position is the end of the text, which we compute.
"""

from __future__ import annotations

import re

_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_AT_END = re.compile(r"\s*\(at end of document\)")


def locate(message: str, text: str) -> tuple[str, int, int]:
    """(reason without the position, line, column), both 1-based, for a TOMLDecodeError's message."""
    if found := _AT.search(message):
        return _AT.sub("", message).strip(), int(found.group(1)), int(found.group(2))
    reason = _AT_END.sub("", message).strip()
    body = text.rstrip("\n")  # a trailing newline does not move the place where the text stops making sense
    lines = body.split("\n")
    return reason, len(lines), len(lines[-1]) + 1
