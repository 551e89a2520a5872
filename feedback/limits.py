"""Child processes under resource limits: what the compile checks and the sandbox share.

Limits are set in the child between fork and exec (``preexec``): an address-space cap, no core
files, and where asked a CPU-time cap, a file-size cap and a process-count cap; the kernel's
OOM killer is told to pick the child first. Each child leads a session of its own, so that a
timeout or the end of a run kills everything it started (compiler drivers fork: gcc runs
cc1; a test program may fork on purpose), not only the process we launched.

``run_limited`` never waits without a deadline and never holds more than ``OUTPUT_BYTES`` of a
stream: a tool whose descendant keeps its stdout open (even one that left the session with
``setsid``) cannot hang the caller, and a tool that prints hundreds of megabytes costs the
caller the time to read and drop them, not the memory (issue 12, finding 7).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Completed:
    """How a limited run ended: its exit status, stdout then stderr, and whether it ran over."""

    returncode: int
    output: str
    timed_out: bool


def lower(which: int, soft: int, hard: int | None = None) -> None:
    """Set a limit no higher than the current hard limit (only root may raise that)."""
    current = resource.getrlimit(which)[1]
    hard = soft if hard is None else hard
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(which, (soft, hard))


def preexec(*, memory_mb: int, cpu_s: float | None = None, file_bytes: int | None = None,
            processes: int | None = None) -> Callable[[], None]:
    """The function a child runs between fork and exec to put itself under the limits.

    ``cpu_s``: RLIMIT_CPU, rounded up plus a second (the soft limit sends SIGXCPU, the hard
    one a second later SIGKILL); ``file_bytes``: RLIMIT_FSIZE (each file the child writes, its
    redirected stdout and stderr included); ``processes``: RLIMIT_NPROC. None leaves a limit.
    """
    memory = memory_mb * 1024 * 1024

    def apply() -> None:
        lower(resource.RLIMIT_AS, memory)
        lower(resource.RLIMIT_CORE, 0)
        if cpu_s is not None:
            cpu = math.ceil(cpu_s) + 1
            lower(resource.RLIMIT_CPU, cpu, cpu + 1)
        if file_bytes is not None:
            lower(resource.RLIMIT_FSIZE, file_bytes)
        if processes is not None:
            lower(resource.RLIMIT_NPROC, processes)
        try:  # the kernel's OOM killer should pick the child, never its parent
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")
        except OSError:
            pass

    return apply


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``, from /proc; [] where there is none."""
    found = []
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return []
    for pid in entries:
        try:
            stat = Path("/proc", pid, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and fields[0] not in "ZX" and int(fields[3]) == sid:
            found.append(int(pid))
    return found


def _sigkill_until_gone(alive: Callable[[], list[int]],
                        first: Callable[[], None] | None = None) -> None:
    """SIGKILL every pid ``alive()`` names, again until it names none (at most 50 rounds);
    ``first`` runs at the start of each round."""
    pause = 0.001
    for _ in range(50):
        if first is not None:
            first()
        pids = alive()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(pause)  # a killed process is usually gone within a millisecond
        pause = min(2 * pause, 0.01)


def kill_session(sid: int) -> None:
    """SIGKILL the process group, then whatever else of the session is alive (a child that
    moved to a group of its own). A fork that races with the group kill fails: the kernel
    refuses to fork a process with a fatal signal pending."""
    def group() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGKILL)

    _sigkill_until_gone(lambda: session_processes(sid), group)


OUTPUT_BYTES = 1 << 20
"""Bytes kept of each stream of a tool: its first half and its last half (where gcc and javac
print their error count); what lies between is read and dropped, and a line says how much."""
GRACE_S = 0.5
"""How long, after the tool exits, its descendants may keep its pipes open before they are
killed (the tool has printed what it had to say by then)."""
_CHUNK = 1 << 16
_POLL = 0.05  # seconds between two looks at whether the tool has exited while pipes stay open


class _Capture:
    """The head and the tail of one stream, and a count of the bytes seen."""

    def __init__(self, limit: int) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.seen = 0

    def add(self, data: bytes) -> None:
        self.seen += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.half:  # trimmed now and then, not on every chunk
                del self.tail[:-self.half]

    def text(self, name: str) -> str:
        tail = self.tail[-self.half:]
        cut = self.seen - len(self.head) - len(tail)
        if not cut:
            return bytes(self.head + tail).decode("utf-8", "replace")
        return (self.head.decode("utf-8", "replace") + f"\n[compilot: {cut} bytes of {name} "
                f"cut]\n" + tail.decode("utf-8", "replace"))


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has ended, without reaping it: its pid (the session's id) stays
    taken, so that killing the session afterwards cannot hit a process that reused it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _wait_exited(pid: int, until: float) -> bool:
    """Whether child ``pid`` ends by ``until`` (not reaped, as in ``_exited``)."""
    pause = 0.001
    while not _exited(pid):
        left = until - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, _POLL)
    return True


def _drain(pid: int, captures: dict[int, _Capture], selector: selectors.BaseSelector,
           until: float) -> None:
    """Read the pipes in ``selector`` into ``captures`` until each is at end of file, or
    ``until``; once ``pid`` has exited, for at most GRACE_S more."""
    exited = False
    while selector.get_map():
        left = until - time.monotonic()
        if left <= 0:
            return
        for key, _ in selector.select(min(left, _POLL)):
            data = os.read(key.fd, _CHUNK)
            if data:
                captures[key.fd].add(data)
            else:
                selector.unregister(key.fd)
        if not exited and _exited(pid):
            exited = True
            until = min(until, time.monotonic() + GRACE_S)


def pipe_holders(inodes: set[int]) -> list[int]:
    """Processes other than this one with a descriptor on one of the pipes ``inodes``."""
    found = []
    wanted = {f"pipe:[{ino}]" for ino in inodes}
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return []
    me = str(os.getpid())
    for pid in entries:
        if pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # ended meanwhile, or not ours to look at
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    found.append(int(pid))
                    break
            except OSError:
                continue
    return found


def kill_holders(inodes: set[int]) -> None:
    """SIGKILL whatever holds the pipes ``inodes``: descendants of a tool that left its session
    (``setsid``, a double fork) and keep its output open."""
    _sigkill_until_gone(lambda: pipe_holders(inodes))


def run_limited(argv: Sequence[str], *, cwd: Path | None, timeout: float, memory_mb: int,
                env: dict[str, str] | None = None) -> Completed:
    """Run ``argv`` with stdin closed and an address-space limit, at most OUTPUT_BYTES of each
    of its streams captured; at ``timeout`` everything in its session is killed, and so is
    whatever still holds its pipes once it has ended. Returns within ``timeout`` plus about
    2 * GRACE_S whatever the tool and its descendants do."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=preexec(memory_mb=memory_mb))
    assert proc.stdout is not None and proc.stderr is not None
    pipes = (proc.stdout, proc.stderr)
    captures = {p.fileno(): _Capture(OUTPUT_BYTES) for p in pipes}
    deadline = time.monotonic() + timeout
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for pipe in pipes:
            selector.register(pipe, selectors.EVENT_READ)
        try:
            _drain(proc.pid, captures, selector, deadline)
            # The pipes are closed (or held by a descendant): has the tool itself ended?
            timed_out = not _wait_exited(proc.pid, deadline)
        finally:
            kill_session(proc.pid)
            if selector.get_map():  # a descendant outside the session still holds a pipe
                kill_holders({os.fstat(p.fileno()).st_ino for p in pipes})
                _drain(proc.pid, captures, selector, time.monotonic() + GRACE_S)
            for pipe in pipes:
                pipe.close()
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): not ours
                pass
    out, err = captures.values()
    return Completed(-signal.SIGKILL if proc.returncode is None else proc.returncode,
                     out.text("stdout") + err.text("stderr"), timed_out)
