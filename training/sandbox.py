"""Running untrusted generated Python code with limits, without network, leaving nothing behind.

Each program runs in a fresh temporary directory (its cwd, HOME and TMPDIR, removed afterwards)
as a child of its own session, with resource limits set between fork and exec
(``compilot.feedback.limits``, which the compile checks share):

* RLIMIT_AS (``memory_mb``), RLIMIT_CPU (the timeout rounded up, plus a second), RLIMIT_FSIZE
  (each file, stdout and stderr included, at most 64 MB) and no core files;
* RLIMIT_NPROC against fork bombs, with a watchdog where the kernel ignores that limit;
* no network: an unprivileged user+network namespace (``unshare --map-root-user --net``, where
  the only interface is a loopback that is down) when the kernel allows one, else a guard that
  makes Python's socket constructors and name lookups raise ``OSError``. The guard stops a
  program that uses the network by accident, not one that sets out to (``ctypes``, a
  subprocess running ``curl``); the namespace stops both.

At the end (normal exit, timeout, or an exception in the evaluator) every process left in the
session is killed. A program that calls ``setsid()`` in a child escapes the sweep; RLIMIT_CPU
still ends such a process once it has used its CPU seconds.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from compilot.feedback import limits

MAX_PROCESSES = 32
"""Processes a program may have alive at once (its own included)."""
OUTPUT_BYTES = 4096
"""Bytes kept of each stream: the head of stdout, the tail of stderr (where a traceback ends)."""
FILE_BYTES = 64 * 1024 * 1024
"""RLIMIT_FSIZE: the largest file the program may write, its stdout and stderr files included."""

_POLL = 0.05  # seconds between two counts of the session's processes by the watchdog
_MAIN = "main.py"

# Installed before the program in "socket-guard" mode; run_path keeps the program's own line
# numbers in its tracebacks (a preamble prepended to the file would shift them). Sockets made
# from an existing descriptor (socket.socketpair, which asyncio needs) and AF_UNIX stay.
# _socket is left alone: socket.socket's own methods call into it by name.
_GUARD = """\
import runpy, socket, sys

def _off(*args, **kwargs):
    raise OSError("network disabled in the sandbox")

class _Socket(socket.socket):
    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        if fileno is None and family != socket.AF_UNIX:
            _off()
        super().__init__(family, type, proto, fileno)

socket.socket = socket.SocketType = _Socket
for _name in ("create_connection", "create_server", "getaddrinfo", "gethostbyname",
              "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "getfqdn"):
    setattr(socket, _name, _off)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


class RunStatus(StrEnum):
    """How a program ended."""

    PASSED = "passed"
    """Exit status 0 within the limits."""
    FAILED = "failed"
    """Any other exit status."""
    TIMEOUT = "timeout"
    """Past the time limit (wall clock or CPU seconds)."""
    KILLED = "killed"
    """Ended by a signal, or by the watchdog for too many processes."""


@dataclass(frozen=True)
class Outcome:
    """How one program ended; ``output`` is stdout then stderr, each cut to OUTPUT_BYTES."""

    status: RunStatus
    returncode: int | None  # negative: the signal that ended it
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        """The program exited with status 0 within its limits."""
        return self.status is RunStatus.PASSED


@functools.cache
def network_isolation() -> str:
    """"namespace" when ``unshare --map-root-user --net`` works here, else "socket-guard"."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "socket-guard"
    try:
        # Kernels and AppArmor profiles (Ubuntu 24.04) may forbid unprivileged namespaces.
        probe = subprocess.run([unshare, "--map-root-user", "--net", "--", "true"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "socket-guard"
    return "namespace" if probe.returncode == 0 else "socket-guard"


def run_python(code: str, *, timeout: float, memory_mb: int,
               max_processes: int = MAX_PROCESSES, python: str | None = None) -> Outcome:
    """Run ``code`` as ``__main__`` under the sandbox's limits; nothing the code does makes
    this raise or hang. ``python``: an interpreter of 3.11 or later (for ``-P``), by default
    the evaluator's own."""
    if timeout <= 0 or memory_mb <= 0 or max_processes <= 0:
        raise ValueError("timeout, memory_mb and max_processes must be positive")
    argv = _argv(python or sys.executable)
    watch = max_processes if _nproc_ignored() else None
    apply = limits.preexec(memory_mb=memory_mb, cpu_s=timeout, file_bytes=FILE_BYTES,
                           processes=None if watch else _tasks(os.getuid()) + max_processes)
    with (tempfile.TemporaryDirectory(prefix="compilot-sandbox-", ignore_cleanup_errors=True)
          as tmp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err):
        # Outside the program's directory, so that it cannot truncate what it printed.
        Path(tmp, _MAIN).write_bytes(code.encode("utf-8", "replace"))
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=tmp, env=_env(tmp), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True,
                                preexec_fn=apply)
        try:
            ended = _wait(proc, timeout, watch)
        finally:
            limits.kill_session(proc.pid)
            proc.wait()
        seconds = time.perf_counter() - started
        output = _head(out) + _tail(err)
    status = _status(ended, proc.returncode)
    if ended == "timeout":
        output += f"\n[sandbox: timed out after {timeout:g} s]"
    elif ended == "processes":
        output += f"\n[sandbox: killed at more than {max_processes} processes]"
    return Outcome(status, proc.returncode, output, seconds)


def _argv(python: str) -> list[str]:
    # -s -P with an environment we build is -I (= -E -s -P) except that PYTHONHASHSEED, which
    # -E would ignore, still fixes str hashes, so set order and output repeat from run to run.
    # -u: what was printed before a kill is in the file, not lost in a buffer.
    flags = [python, "-s", "-P", "-u"]
    if network_isolation() == "namespace":
        unshare = shutil.which("unshare") or "unshare"
        return [unshare, "--map-root-user", "--net", "--", *flags, _MAIN]
    return [*flags, "-c", _GUARD, _MAIN]


def _env(home: str) -> dict[str, str]:
    # Nothing inherited but PATH: no proxies, no tokens, no PYTHONPATH.
    return {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": home,
            "TMPDIR": home, "PYTHONHASHSEED": "0"}


@functools.cache
def _nproc_ignored() -> bool:
    """Whether the kernel ignores RLIMIT_NPROC for us: for root, and with CAP_SYS_ADMIN or
    CAP_SYS_RESOURCE (``copy_process`` in kernel/fork.c)."""
    if os.getuid() == 0:
        return True
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    caps = next((int(line.split()[1], 16) for line in status.splitlines()
                 if line.startswith("CapEff:")), 0)
    return bool(caps & (1 << 21 | 1 << 24))  # CAP_SYS_ADMIN, CAP_SYS_RESOURCE


def _tasks(uid: int) -> int:
    """Tasks (threads) whose real user is ``uid``.

    RLIMIT_NPROC caps the tasks of the real user, all of them and not those of one process
    tree, so a limit of ``max_processes`` alone would fail a sandbox started by a user with a
    busy desktop (or an evaluator with many threads). The limit is this count plus
    ``max_processes``; other programs of the user starting at the same time share the margin.
    """
    total = 0
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:  # no /proc (macOS): count processes, which is what its limit counts
        ps = subprocess.run(["ps", "-U", str(uid), "-o", "pid="], capture_output=True,
                            text=True, check=False)
        return len(ps.stdout.split())
    for pid in entries:
        try:
            status = Path("/proc", pid, "status").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            total += int(fields.get("Threads", "1"))
    return total


def _wait(proc: subprocess.Popen[bytes], timeout: float, watch: int | None) -> str:
    """"exited", "timeout", or "processes" when the session grew past ``watch`` processes."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        try:
            proc.wait(timeout=left if watch is None else min(left, _POLL))
            return "exited"
        except subprocess.TimeoutExpired:
            pass
        if watch is not None and len(limits.session_processes(proc.pid)) > watch:
            return "processes"


def _status(ended: str, returncode: int | None) -> RunStatus:
    if ended == "timeout":
        return RunStatus.TIMEOUT
    if ended == "processes":
        return RunStatus.KILLED
    if returncode == 0:
        return RunStatus.PASSED
    if returncode == -signal.SIGXCPU:  # RLIMIT_CPU: a busy loop with the wall clock not yet up
        return RunStatus.TIMEOUT
    return RunStatus.KILLED if returncode is not None and returncode < 0 else RunStatus.FAILED


def _head(stream: IO[bytes]) -> str:
    size = os.fstat(stream.fileno()).st_size
    stream.seek(0)
    text = stream.read(OUTPUT_BYTES).decode("utf-8", "replace")
    return text + (f"\n[sandbox: {size - OUTPUT_BYTES} more bytes of stdout cut]\n"
                   if size > OUTPUT_BYTES else "")


def _tail(stream: IO[bytes]) -> str:
    size = os.fstat(stream.fileno()).st_size
    stream.seek(max(0, size - OUTPUT_BYTES))
    text = stream.read(OUTPUT_BYTES).decode("utf-8", "replace")
    return (f"[sandbox: {size - OUTPUT_BYTES} earlier bytes of stderr cut]\n"
            if size > OUTPUT_BYTES else "") + text
