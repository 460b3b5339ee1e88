"""The one exception tree of lipsyncd; each class says who is at fault and what happens next.

    LipsyncError
    ├── ConfigError        the operator's config is wrong → one line naming the key, exit 78, no restart
    ├── JobRejected        the producer's input is wrong → job to failed/ with error.txt; the role carries on
    │   (code + params select a plain-language message in core.messages, in en or zh)
    ├── EnvironmentFault   the appliance is sick (GPU gone, ffmpeg missing, disk full, share unreachable)
    │   │                  → job back to staging/, alert, exit non-zero so the process manager restarts us
    │   └── ShareUnreachable   EIO/ESTALE/ENOTCONN/...: pause, never read as "the files are gone"
    └── JobLost            another worker took this job over (our lease expired): discard our output

Anything else is a bug: the job fails with the traceback in report.json and the role exits non-zero.
"""

from __future__ import annotations

import errno
from typing import Any

EXIT_CONFIG = 78  # EX_CONFIG: process managers are told not to restart on it
EXIT_FAULT = 70  # EX_SOFTWARE: environment fault or bug; restart is appropriate

# errno values that mean "the share is not answering", not "the file is gone"
UNREACHABLE_ERRNOS = frozenset(
    e
    for e in (
        errno.EIO,
        getattr(errno, "ESTALE", None),
        getattr(errno, "ENOTCONN", None),
        getattr(errno, "ETIMEDOUT", None),
        getattr(errno, "EHOSTDOWN", None),
        getattr(errno, "EHOSTUNREACH", None),
        getattr(errno, "ENETUNREACH", None),
        getattr(errno, "EBUSY", None),
        getattr(errno, "ECONNABORTED", None),
    )
    if e is not None
)


class LipsyncError(Exception):
    """Base of every error lipsyncd raises on purpose."""


class ConfigError(LipsyncError):
    """The operator's configuration is wrong; the message names the key and what is allowed."""


class EnvironmentFault(LipsyncError):
    """The machine or share is unwell; the job is not at fault and goes back to the queue."""


class ShareUnreachable(EnvironmentFault):
    """A share operation failed with an errno that means the server is away."""


class JobLost(LipsyncError):
    """Our claim on a job is gone (the lease expired and someone took it over)."""


class JobRejected(LipsyncError):
    """The producer's input cannot be processed.

    `code` selects the message in core.messages; `params` fill it. The exception text is the English
    rendering, so logs read well without a catalog lookup.
    """

    def __init__(self, code: str, **params: Any) -> None:
        self.code = code
        self.params = params
        from daemon.core import messages  # local: messages imports nothing from here at module level

        super().__init__(messages.render(code, "en", params).what)


OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def is_out_of_space(exc: BaseException) -> bool:
    """True for a write refused because the share (or a quota on it) is full."""
    return isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE_ERRNOS


def is_unreachable(exc: OSError) -> bool:
    """True when an OSError means the share is away rather than that a path is missing."""
    return exc.errno in UNREACHABLE_ERRNOS
