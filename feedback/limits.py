"""Child processes under resource limits: what the compile checks and the sandbox share.

Limits are set in the child between fork and exec (``preexec``): an address-space cap, no core
files, and where asked a CPU-time cap, a file-size cap and a process-count cap; the kernel's
OOM killer is told to pick the child first. Each child leads a session of its own, so that a
timeout or the end of a run kills everything it started (compiler drivers fork: gcc runs
cc1; a test program may fork on purpose), not only the process we launched.
"""

from __future__ import annotations

import math
import os
import resource
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


def kill_session(sid: int) -> None:
    """SIGKILL the process group, then whatever else of the session is alive (a child that
    moved to a group of its own). A fork that races with the group kill fails: the kernel
    refuses to fork a process with a fatal signal pending."""
    for _ in range(50):
        try:
            os.killpg(sid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        alive = session_processes(sid)
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def run_limited(argv: Sequence[str], *, cwd: Path | None, timeout: float, memory_mb: int,
                env: dict[str, str] | None = None) -> Completed:
    """Run ``argv`` with stdin closed and an address-space limit, its output captured; at
    ``timeout`` everything in its session is killed."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True,
                            preexec_fn=preexec(memory_mb=memory_mb))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        out, err = proc.communicate()
        return Completed(proc.returncode, out + err, True)
    return Completed(proc.returncode, out + err, False)
