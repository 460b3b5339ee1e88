"""What a `doctor` check can conclude besides PASS: it does not apply (Skip), it passed with a caveat (Warn),
or it found a fault (Fail)."""

from __future__ import annotations


class Skip(Exception):
    """The check does not apply here; the message says why."""


class Fail(Exception):
    """The check failed; the message says what is wrong and what to do."""


class Warn(Exception):
    """The check passed with a caveat the operator should act on (a WARN line; not a failure)."""
