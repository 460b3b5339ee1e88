"""The box every ffmpeg/ffprobe child that reads producer media runs in: resource limits, and where the
host allows it no network and a view of only the files it needs (bubblewrap, else `unshare --net`).

A decoder fed a crafted file is the classic way in (reference/media.md §4.3); the allowlists stop the
playlist tricks, the box contains a decoder that is exploited or runs away. The limits and the box are
programs wrapped around the argv (`prlimit … -- bwrap … -- ffmpeg …`), never a Python preexec_fn:
subprocess then spawns with vfork/exec and runs no Python in the child, which stays safe after CUDA
and threads started (a preexec_fn runs interpreter code between fork and exec).

A child that hits a limit ends with a signal (SIGXCPU, SIGXFSZ) or an allocation/open error; `verdict`
turns that into a JobRejected naming the file, and the box's own failure to start into EnvironmentFault.
The box each child of a job gets, from its MediaInfo and Plan, is boxes.py's.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.core import messages
from daemon.core.config import MediaConfig
from daemon.core.errors import EnvironmentFault, JobRejected, LipsyncError

log = logging.getLogger(__name__)

messages.register({
    "media_limit": {
        "en": ("The file {name} made the {tool} use more than {what}: it may be damaged or crafted.",
               "Check that it plays normally, export it again and submit the job again. If it is a normal "
               "file, tell the operator (the limits are in the [media] section of config.toml)."),
        "zh": ("文件 {name} 使{tool}使用了超过 {what} 的资源：文件可能已损坏或被恶意构造。",
               "请确认它能正常播放，重新导出后再提交。"
               "如果文件正常，请联系管理员（限制在 config.toml 的 [media] 中）。"),
    },
})

MiB = 1024 * 1024
OPEN_FILES = 256  # ffmpeg opens a handful; the concat muxer one segment at a time
NO_FILES = 1 * MiB  # a child that should only write to pipes
_CPU_GRACE_S = 10  # hard limit above the soft one, so SIGXCPU (a clear verdict) comes before SIGKILL
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
                 "/etc/localtime")
_SETUP_PREFIXES = ("bwrap:", "unshare:", "prlimit:", "lipsyncd-limits:")


class Level(enum.Enum):
    """How much of the host a media child can reach, strongest first."""

    BWRAP = "bwrap"  # own namespaces: no network, sees /usr, the tool and only the files it needs
    UNSHARE = "unshare"  # own network namespace (no network), sees the whole filesystem
    LIMITS = "limits"  # resource limits only


@dataclass(frozen=True)
class Limits:
    memory_bytes: int  # address space (RLIMIT_AS)
    cpu_s: int  # CPU seconds, all threads together (RLIMIT_CPU, soft)
    file_bytes: int  # largest file it may write (RLIMIT_FSIZE)
    open_files: int = OPEN_FILES  # RLIMIT_NOFILE


@dataclass(frozen=True)
class Box:
    """Limits and a view of the filesystem for one child; `wrap` turns an argv into the boxed argv."""

    subject: str  # the producer's file this child works on (the name a rejection gives)
    tool: str  # "decoder" / "encoder", for the message
    limits: Limits
    level: Level
    reads: tuple[Path, ...] = ()  # visible read-only (files or folders)
    writes: tuple[Path, ...] = ()  # folders visible read-write
    outputs: tuple[Path, ...] = ()  # files created (empty) and visible read-write

    def wrap(self, argv: Sequence[str]) -> list[str]:
        inner = list(argv)
        if self.level is Level.BWRAP:
            for path in self.outputs:
                if not path.exists():
                    path.touch()  # bwrap binds existing paths only
            inner = [*bwrap_argv(inner[0], self.reads, (*self.writes, *self.outputs)), "--", *inner]
        elif self.level is Level.UNSHARE:
            inner = [*unshare_argv(), "--", *inner]
        return [*limits_argv(self.limits), *inner]

    def verdict(self, returncode: int, stderr_tail: str, cpu_s: float | None = None) -> LipsyncError | None:
        """What a non-zero exit means: a limit hit (the file's fault), the box failing (ours), or None."""
        if returncode == 0:
            return None
        lines = [line.strip() for line in stderr_tail.splitlines() if line.strip()]
        setup = next((line for line in lines if line.startswith(_SETUP_PREFIXES)), None)
        if setup is not None or "error while loading shared libraries" in stderr_tail:
            return EnvironmentFault(f"the {self.tool} could not start inside its {self.level.value} box: "
                                    f"{(setup or lines[-1])[:200]} (see media.sandbox and "
                                    "media.child_memory_mb in config.toml)")
        what = self._limit_hit(_signal_of(returncode, self.level), stderr_tail, cpu_s)
        if what is None:
            return None
        return JobRejected("media_limit", name=self.subject, tool=self.tool, what=what)

    def _limit_hit(self, sig: int, stderr_tail: str, cpu_s: float | None) -> str | None:
        # ffmpeg catches SIGXCPU and exits 255 like after a Ctrl-C, so the CPU time it used decides
        if sig == signal.SIGXCPU or (cpu_s is not None and cpu_s >= self.limits.cpu_s):
            return f"{self.limits.cpu_s} s of CPU time"
        # SIGXFSZ kills; as pid 1 of its namespace (bwrap) the tool is spared the signal and gets EFBIG
        if sig == signal.SIGXFSZ or "File too large" in stderr_tail:
            return f"{_size(self.limits.file_bytes)} of output"
        if "Cannot allocate memory" in stderr_tail or "Out of memory" in stderr_tail:
            # under RLIMIT_AS an allocation fails long before the machine runs short (overcommit): a
            # machine out of memory kills with the OOM killer (SIGKILL), it does not return ENOMEM
            return f"{_size(self.limits.memory_bytes)} of memory"
        if "Too many open files" in stderr_tail:
            return f"{self.limits.open_files} open files"
        return None


def media_box(cfg: MediaConfig, subject: str, tool: str, *, pixels: int, seconds: float | None,
              file_bytes: int = NO_FILES, reads: Sequence[Path] = (), writes: Sequence[Path] = (),
              outputs: Sequence[Path] = ()) -> Box:
    """The box for a child working on the producer's file named `subject`.

    Memory comes from the picture size, CPU from the media duration the way the wall-clock limits do
    (60 s + timeout_factor × duration; the probe's own timeout when the duration is not known yet),
    times the cores a child's threads can use at once.
    """
    cores = len(os.sched_getaffinity(0))
    wall = cfg.probe_timeout_s if seconds is None else 60 + cfg.timeout_factor * seconds
    limits = Limits(memory_bytes=cfg.child_memory_mb * MiB or memory_for(pixels, cores),
                    cpu_s=math.ceil(wall * cores), file_bytes=max(file_bytes, NO_FILES))
    return Box(subject=subject, tool=tool, limits=limits, level=level(cfg.sandbox, cfg.ffmpeg),
               reads=tuple(reads), writes=tuple(writes), outputs=tuple(outputs))


def for_probe(cfg: MediaConfig, path: Path) -> Box:
    """ffprobe before anything is known: the largest accepted picture, the probe's timeout."""
    return media_box(cfg, path.name, "decoder", pixels=cfg.max_dimension ** 2, seconds=None, reads=(path,))


def memory_for(pixels: int, cores: int) -> int:
    """Address space for one child: libraries and malloc arenas (measured: a 16-thread decode peaked at
    1.5 GB virtual whatever the size, a 4K x264 encode at 2.7 GB), plus frames that grow with the picture.
    Measurements: bench/RESULTS.md, Issue 20."""
    return 1024 * MiB + cores * 96 * MiB + pixels * 256


def limits_argv(limits: Limits) -> list[str]:
    """prlimit from util-linux when present, else a Python trampoline that sets the limits and execs."""
    values = (limits.memory_bytes, limits.cpu_s, limits.cpu_s + _CPU_GRACE_S, limits.file_bytes,
              limits.open_files)
    prlimit = shutil.which("prlimit")
    if prlimit is not None:
        mem, soft, hard, size, files = values
        return [prlimit, f"--as={mem}", f"--cpu={soft}:{hard}", f"--fsize={size}", f"--nofile={files}", "--"]
    return [sys.executable, "-S", "-c", _TRAMPOLINE, *map(str, values), "--"]


_TRAMPOLINE = """\
import os, resource as r, sys
a = sys.argv
try:
    r.setrlimit(r.RLIMIT_AS, (int(a[1]), int(a[1])))
    r.setrlimit(r.RLIMIT_CPU, (int(a[2]), int(a[3])))
    r.setrlimit(r.RLIMIT_FSIZE, (int(a[4]), int(a[4])))
    r.setrlimit(r.RLIMIT_NOFILE, (int(a[5]), int(a[5])))
    os.execv(a[7], a[7:])
except OSError as e:
    sys.exit(f"lipsyncd-limits: {e}")
"""


def bwrap_argv(tool: str, reads: Sequence[Path], writes: Sequence[Path]) -> list[str]:
    """A bubblewrap sandbox: every namespace of its own (no network), system libraries read-only, the
    tool's folder, `reads` read-only and `writes` read-write at their own paths; nothing else."""
    # --as-pid-1: the tool is the only process of its pid namespace and bwrap's own child, so its CPU
    # time reaches bwrap's zombie (cpu_seconds); with bwrap's reaper in between it was lost
    argv = [_which("bwrap"), "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for top in _SYSTEM_DIRS:  # merged-/usr hosts have these as symlinks into /usr
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for extra in _SYSTEM_FILES:
        argv += ["--ro-bind-try", extra, extra]
    home = os.path.dirname(os.path.realpath(tool))
    if not home.startswith("/usr/"):  # a static ffmpeg carried in, or a wheel's binary
        argv += ["--ro-bind", home, home]
    # under /dev the box's own null/zero/full/random serve (a bound host device node would be refused:
    # mounts in a user namespace are nodev)
    for path in (p for p in reads if not str(p).startswith("/dev/")):
        argv += ["--ro-bind", str(path), str(path)]
    for path in (p for p in writes if not str(p).startswith("/dev/")):
        argv += ["--bind", str(path), str(path)]
    return [*argv, "--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]


def unshare_argv() -> list[str]:
    """A network namespace of its own; as a normal user inside a user namespace mapped to us."""
    argv = [_which("unshare"), "--net"]
    return argv if os.geteuid() == 0 else [*argv, "--user", "--map-root-user"]


@functools.cache
def level(mode: str, ffmpeg: str = "ffmpeg") -> Level:
    """The level media children run at, found once per process by starting a real box.

    "auto" takes the strongest that works here; an explicit level that does not work is the operator's
    to fix (EnvironmentFault naming the key: the job waits in staging/ and doctor says why)."""
    wanted = [Level(mode)] if mode != "auto" else [Level.BWRAP, Level.UNSHARE]
    for candidate in wanted:
        why = _why_not(candidate, ffmpeg)
        if why is None:
            log.info("media children run at level %s", candidate.value)
            return candidate
        if mode != "auto":
            raise EnvironmentFault(f"media.sandbox = {mode!r}, but {why}: install it, allow it, or set "
                                   "media.sandbox = \"auto\" in config.toml")
        log.info("media box %s not available: %s", candidate.value, why)
    log.warning("media children run with resource limits only: no bubblewrap or network namespace here")
    return Level.LIMITS


def _why_not(candidate: Level, ffmpeg: str) -> str | None:
    """None if a child starts at this level here, else the reason it does not."""
    if candidate is Level.LIMITS:
        return None
    tool = shutil.which(ffmpeg) or shutil.which("true") or "/bin/true"
    probe = [tool, "-version"] if os.path.basename(tool) != "true" else [tool]
    try:
        if candidate is Level.BWRAP:
            argv = [*bwrap_argv(tool, (), ()), "--", *probe]
        else:
            argv = [*unshare_argv(), "--", *probe]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=30)
    except (EnvironmentFault, OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return f"{candidate.value} does not start here ({last[0][:160]})"
    return None


def exited(pid: int, timeout: float | None) -> bool:
    """Wait until `pid` (our child) has exited, without reaping it; False if still running at timeout.
    True at once where pidfds do not exist (the caller then just waits, without a CPU reading)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def cpu_seconds(pid: int) -> float | None:
    """CPU time of an exited, not yet reaped child and of the children it reaped (bwrap's tool)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "Z":  # already reaped and the pid reused, or not ended: no reading
        return None
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def describe(mode: str, ffmpeg: str) -> str:
    """One line for `lipsyncd doctor`."""
    found = level(mode, ffmpeg)
    what = {Level.BWRAP: "bubblewrap: no network; children see system libraries, ffmpeg and only their "
                         "job's files (inputs read-only, work folder writable)",
            Level.UNSHARE: "unshare: no network (own network namespace); the filesystem is not narrowed",
            Level.LIMITS: "resource limits only: neither bubblewrap nor a network namespace works here"}
    via = "prlimit" if shutil.which("prlimit") else "a Python trampoline (no prlimit on PATH)"
    return f"media.sandbox = {mode}: {what[found]}; memory/CPU/file-size/open-file limits via {via}"


def _signal_of(returncode: int, lvl: Level) -> int:
    if returncode < 0:
        return -returncode
    if lvl is Level.BWRAP and returncode > 128:  # bwrap exits 128 + the signal that ended its child
        return returncode - 128
    return 0


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise EnvironmentFault(f"{program} is not installed")
    return path


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"
