"""Running untrusted generated Python code with limits, isolated, leaving nothing behind.

Each program runs in a fresh temporary directory (its cwd, HOME and TMPDIR, removed afterwards)
as a child of its own session, with resource limits set between fork and exec
(``compilot.feedback.limits``, which the compile checks share): RLIMIT_AS (``memory_mb``),
RLIMIT_CPU (the timeout rounded up, plus a second), RLIMIT_FSIZE (each file, stdout and stderr
included, at most 64 MB), no core files, and RLIMIT_NPROC against fork bombs (a watchdog where
the kernel ignores that limit). It is isolated by the strongest mechanism that works here,
tried once per process; ``isolation()`` says which and what it enforces (issue 12, finding 10):

* ``bwrap`` (bubblewrap, where installed), else ``namespaces`` (``unshare`` and the launcher
  below): new PID, mount, network, IPC and UTS namespaces, and a user namespace where the
  evaluator is not root. The program sees a root of its own: the system and Python
  directories read-only, its own directory read-write, a private /tmp, /dev and /proc; nothing
  else of the filesystem (no home, no source tree, no ssh-agent or docker socket), no process
  outside its namespace (none to read or signal), no network (a loopback that is down). Where
  the evaluator is root it runs as uid 65534 (uid 0, even in a user namespace, still owns what
  root owns), else as the user without capabilities. When it ends, its namespace's init ends,
  and the kernel kills whatever it left behind, ``setsid`` or not.
* ``guard``, where neither works (unprivileged namespaces forbidden): the limits, and Python's
  socket constructors and name lookups made to raise ``OSError``. It does not keep the program
  from the user's files or processes; as root it runs the program as uid 65534 where that uid
  can read the Python installation.

Each adds a seccomp filter where libseccomp is installed (loaded with ctypes). It refuses
``socket(AF_UNIX)`` (the guard: every ``socket``; ``socketpair``, which asyncio needs, stays),
new namespaces, ``ptrace``, mounts, io_uring (whose operations pass by the filter), keyrings,
BPF and kernel modules: under namespaces a second wall (no socket file is visible anyway),
under the guard the one that keeps Unix sockets and the network out of reach.
"""

from __future__ import annotations

import ctypes.util
import functools
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
NOBODY = 65534
"""The uid and gid a program runs as where the evaluator is root."""

_POLL = 0.05  # seconds between two counts of the session's processes by the watchdog
_MAIN = "main.py"
_LAUNCHERS = 2  # processes of the sandbox around the program: unshare or bwrap, the launcher
_TMPFS_BYTES = 64 * 1024 * 1024  # the program's /tmp and /dev/shm, in memory


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


class Mechanism(StrEnum):
    """What isolates a program, strongest first (the module docstring says what each does)."""

    BWRAP = "bwrap"
    """bubblewrap's namespaces and root of the program's own."""
    NAMESPACES = "namespaces"
    """The same, built by ``unshare`` and the sandbox's launcher."""
    GUARD = "guard"
    """No namespace: limits, and Python's and (with seccomp) the kernel's sockets refused."""


@dataclass(frozen=True)
class Isolation:
    """The mechanism in use, whether a seccomp filter backs it, and the program's uid."""

    mechanism: Mechanism
    seccomp: bool
    nobody: bool
    """The program runs as uid 65534 (the evaluator is root)."""

    def __str__(self) -> str:
        return f"{self.mechanism}+seccomp" if self.seccomp else str(self.mechanism)

    def enforces(self) -> tuple[str, ...]:
        """What this isolation keeps a program from, one line each (for reports)."""
        said = ["time, memory, file-size and process-count limits",
                "nothing left running after it ends" if self.mechanism is not Mechanism.GUARD
                else "processes of its session killed after it ends (setsid escapes)"]
        if self.mechanism is Mechanism.GUARD:
            said.append("Python's sockets and name lookups refused"
                        + (", and the socket system call" if self.seccomp else ""))
            said.append("NOT kept from the user's files and processes (no namespaces here)")
        else:
            said += ["no network (its own network namespace)",
                     "no filesystem outside its directory but the system and Python "
                     "directories, read-only; no Unix socket of the user's",
                     "no process outside its PID namespace visible or signalled"]
        said.append(f"runs as uid {NOBODY}" if self.nobody
                    else "runs as the user, with no capabilities")
        if self.seccomp:
            said.append("seccomp: Unix sockets, new namespaces, ptrace, mounts, io_uring, "
                        "BPF and kernel modules refused")
        return tuple(said)


@dataclass(frozen=True)
class Outcome:
    """How one program ended; ``output`` is stdout then stderr, each cut to OUTPUT_BYTES."""

    status: RunStatus
    returncode: int | None  # negative: the signal that ended it
    output: str
    seconds: float
    isolation: Isolation | None = field(default=None, compare=False)
    """What isolated the program."""

    @property
    def ok(self) -> bool:
        """The program exited with status 0 within its limits."""
        return self.status is RunStatus.PASSED


@functools.cache
def isolation() -> Isolation:
    """The strongest isolation that works here: bwrap, else namespaces, else the guard."""
    for mechanism in (Mechanism.BWRAP, Mechanism.NAMESPACES):
        if (found := probe(mechanism)) is not None:
            return found
    return probe(Mechanism.GUARD) or Isolation(Mechanism.GUARD, False, False)


@functools.cache
def probe(mechanism: Mechanism) -> Isolation | None:
    """The isolation ``mechanism`` gives here, or None where it does not work: a program run
    under it, with seccomp where libseccomp is installed and else without, the guard as uid
    65534 where that works and else as the evaluator (tried once)."""
    tool = {Mechanism.BWRAP: "bwrap", Mechanism.NAMESPACES: "unshare"}.get(mechanism)
    if tool is not None and shutil.which(tool) is None:
        return None
    root = os.geteuid() == 0
    # The guard's program as uid 65534 needs a Python that uid may read (not one in /root).
    owners = (True, False) if root and mechanism is Mechanism.GUARD else (root,)
    for nobody, seccomp in itertools.product(owners, (True, False) if _libseccomp() else
                                             (False,)):
        candidate = Isolation(mechanism, seccomp, nobody)
        try:
            outcome = _run("print('sandbox ok')\n", candidate, timeout=10, memory_mb=1024,
                           max_processes=MAX_PROCESSES, python=sys.executable)
        except OSError:  # the tool could not start at all
            continue
        if outcome.ok and outcome.output.startswith("sandbox ok"):
            return candidate
    return None


def run_python(code: str, *, timeout: float, memory_mb: int,
               max_processes: int = MAX_PROCESSES, python: str | None = None) -> Outcome:
    """Run ``code`` as ``__main__`` under the sandbox's limits and ``isolation()``; nothing the
    code does makes this raise or hang. ``python``: an interpreter of 3.11 or later (for
    ``-P``), by default the evaluator's own."""
    if timeout <= 0 or memory_mb <= 0 or max_processes <= 0:
        raise ValueError("timeout, memory_mb and max_processes must be positive")
    return _run(code, isolation(), timeout=timeout, memory_mb=memory_mb,
                max_processes=max_processes, python=python or sys.executable)


def _run(code: str, iso: Isolation, *, timeout: float, memory_mb: int, max_processes: int,
         python: str) -> Outcome:
    watch = max_processes + _LAUNCHERS if _nproc_ignored() and not iso.nobody else None
    uid = NOBODY if iso.nobody else os.getuid()
    apply = limits.preexec(memory_mb=memory_mb, cpu_s=timeout, file_bytes=FILE_BYTES,
                           processes=None if watch else _tasks(uid) + max_processes + 1)
    with (tempfile.TemporaryDirectory(prefix="compilot-sandbox-", ignore_cleanup_errors=True)
          as tmp, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err,
          tempfile.TemporaryFile() as status):
        # The output files lie outside the program's directory: it cannot truncate them.
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        Path(work, _MAIN).write_bytes(code.encode("utf-8", "replace"))
        if iso.nobody:
            os.chown(work, NOBODY, NOBODY)
            os.chmod(tmp, 0o711)  # the guard's program reaches its directory by its path
        argv = _argv(iso, python, tmp, work, status.fileno())
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=work, env=_env(work), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True,
                                pass_fds=(status.fileno(),), preexec_fn=apply)
        try:
            ended = _wait(proc, timeout, watch)
        finally:
            limits.kill_session(proc.pid)
            proc.wait()
        seconds = time.perf_counter() - started
        output = _head(out) + _tail(err)
        status.seek(0)
        reported = status.read().decode()
    returncode = proc.returncode
    if iso.mechanism is not Mechanism.GUARD and ended == "exited":
        if reported.lstrip("-").isdigit():  # the launcher's report of the program's status
            returncode = int(reported)
        else:  # the launcher ended before the program did: its traceback is in the output
            output += "\n[sandbox: the isolation could not be set up]"
            returncode = returncode or 1
    if ended == "timeout":
        output += f"\n[sandbox: timed out after {timeout:g} s]"
    elif ended == "processes":
        output += f"\n[sandbox: killed at more than {max_processes} processes]"
    return Outcome(_status(ended, returncode), returncode, output, seconds, iso)


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
    """"exited", "timeout", or "processes" when the session grew past ``watch`` processes.

    A pidfd wakes us when the child ends; ``Popen.wait(timeout)`` polls with sleeps that
    double up to 50 ms, which cost a 50 ms program about 30 ms more (Linux 5.3, else that)."""
    deadline = time.monotonic() + timeout
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            step = left if watch is None else min(left, _POLL)
            if pidfd is not None:
                if select.select([pidfd], [], [], step)[0]:
                    proc.wait()
                    return "exited"
            else:
                try:
                    proc.wait(timeout=step)
                    return "exited"
                except subprocess.TimeoutExpired:
                    pass
            if watch is not None and len(limits.session_processes(proc.pid)) > watch:
                return "processes"
    finally:
        if pidfd is not None:
            os.close(pidfd)


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


# -- the isolation: how each mechanism is started, and the launcher -----------------------------

# System calls the filter refuses (EPERM), after Docker's default profile (moby/profiles,
# seccomp/default.json): none is needed by a test program, each widens what it can reach.
_DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
           "chroot", "unshare", "setns", "open_tree", "move_mount", "fsopen", "fsmount",
           "fspick", "mount_setattr", "bpf", "perf_event_open", "userfaultfd", "keyctl",
           "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
           "open_by_handle_at", "name_to_handle_at", "kexec_load", "kexec_file_load",
           "init_module", "finit_module", "delete_module", "quotactl", "swapon", "swapoff",
           "reboot", "syslog", "acct")

# Run by the sandbox's Python as ``-c``, before the program: builds the program's root (mode
# "namespaces"; bwrap builds it itself), drops privileges, loads the seccomp filter, then forks
# the program and reports its wait status through a file (``status``): as a namespace's init it
# could not die of the program's signal. The program is compiled from its own file, so that its
# tracebacks keep its line numbers (a preamble prepended to it would shift them), and runs as
# the module ``__main__``. Mount flags: <sys/mount.h>; prctl options: <linux/prctl.h>.
_LAUNCHER = r"""
import ctypes, errno, json, os, sys, types
cfg = json.loads(sys.argv[1])
sys.argv = sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
seccomp = ctypes.CDLL(cfg["seccomp"], use_errno=True) if cfg["seccomp"] else None
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
KEPT = NOEXEC | 1024 | 2048 | (1 << 21)  # noexec, noatime, nodiratime, relatime: may be locked

def ok(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")

def mount(source, target, kind, flags, data=None):
    source, kind, data = (None if x is None else os.fsencode(x) for x in (source, kind, data))
    ok(libc.mount(source, os.fsencode(target), kind, ctypes.c_ulong(flags), data),
       "mount " + target)

def bind(path, target, flags):  # a bind mount takes its flags from a remount
    mount(path, target, None, BIND)
    mount(None, target, None, REMOUNT | BIND | flags | (os.statvfs(path).f_flag & KEPT))

def build(new, layout):
    os.umask(0o022)
    mount(None, "/", None, REC | PRIVATE)  # nothing done here reaches the host's mounts
    mount("tmpfs", new, "tmpfs", NOSUID | NODEV, "size=1m,mode=0755")
    for kind, path, *arg in layout:
        at = new + path
        os.makedirs(at if kind != "link" and os.path.isdir(path) else os.path.dirname(at),
                    exist_ok=True)
        if kind == "link":
            os.symlink(arg[0], at)
        elif kind == "tmpfs":
            mount("tmpfs", at, "tmpfs", NOSUID | NODEV, f"size={arg[0]},mode=1777")
        elif kind == "proc":
            try:
                mount("proc", at, "proc", NOSUID | NODEV | NOEXEC)
            except OSError:  # a container may forbid it (a masked /proc): no /proc then
                pass
        elif kind == "dev":
            mount("tmpfs", at, "tmpfs", NOSUID | NOEXEC, "size=64k,mode=0755")
            for name in ("null", "zero", "full", "random", "urandom"):
                open(f"{at}/{name}", "w").close()
                mount(f"/dev/{name}", f"{at}/{name}", None, BIND)
            for name, to in (("fd", ""), ("stdin", "/0"), ("stdout", "/1"), ("stderr", "/2")):
                os.symlink("/proc/self/fd" + to, f"{at}/{name}")
            os.mkdir(f"{at}/shm")
            mount("tmpfs", f"{at}/shm", "tmpfs", NOSUID | NODEV | NOEXEC,
                  f"size={arg[0]},mode=1777")
        else:  # "ro", "rw": the same path of the host
            if not os.path.isdir(path):
                open(at, "a").close()
            bind(path, at, NOSUID | NODEV | (RDONLY if kind == "ro" else 0))
    os.chdir(new)
    ok(libc.pivot_root(b".", b"."), "pivot_root")  # the old root now lies on top of the new
    ok(libc.umount2(b".", 2), "umount old root")  # MNT_DETACH; pivot_root(2), NOTES
    os.chdir("/")
    mount(None, "/", None, REMOUNT | BIND | RDONLY | NOSUID | NODEV)

def drop(how):
    for cap in range(64) if how != "none" else ():  # empty the bounding set: PR_CAPBSET_DROP
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            break
    if how == "nobody":
        os.setgroups([])
        os.setresgid(cfg["nobody"], cfg["nobody"], cfg["nobody"])
        os.setresuid(cfg["nobody"], cfg["nobody"], cfg["nobody"])
    elif how == "caps":  # root of a user namespace: keep the uid, lose the capabilities
        ok(libc.capset((ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()), "capset")
    ok(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")  # PR_SET_NO_NEW_PRIVS

class Cmp(ctypes.Structure):  # struct scmp_arg_cmp of <seccomp.h>
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64),
                ("b", ctypes.c_uint64)]

def refuse(ctx, name, code=errno.EPERM, *cmps):
    nr = seccomp.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:  # not a system call of this architecture
        return
    rc = seccomp.seccomp_rule_add_array(ctypes.c_void_p(ctx), 0x50000 | code, nr, len(cmps),
                                        (Cmp * len(cmps))(*cmps) if cmps else None)
    if rc < 0:  # SCMP_ACT_ERRNO(code) above
        raise OSError(-rc, "seccomp rule " + name)

def load_filter(every_socket):
    seccomp.seccomp_init.restype = ctypes.c_void_p
    ctx = seccomp.seccomp_init(0x7FFF0000)  # SCMP_ACT_ALLOW; a foreign architecture is killed
    for name in cfg["denied"]:
        refuse(ctx, name)
    refuse(ctx, "clone3", errno.ENOSYS)  # its flags lie in memory: make libc fall back to clone
    for flag in (0x10000000, 0x20000, 0x20000000, 0x40000000, 0x4000000, 0x8000000, 0x2000000):
        refuse(ctx, "clone", errno.EPERM, Cmp(0, 7, flag, flag))  # CLONE_NEW*, SCMP_CMP_MASKED_EQ
    if every_socket:
        refuse(ctx, "socket")
    else:
        refuse(ctx, "socket", errno.EPERM, Cmp(0, 4, 1, 0))  # AF_UNIX, SCMP_CMP_EQ
    rc = seccomp.seccomp_load(ctypes.c_void_p(ctx))
    if rc < 0:
        raise OSError(-rc, "seccomp_load")

if cfg["mode"] == "namespaces":
    build(cfg["root"], cfg["layout"])
    os.chdir(cfg["work"])
drop(cfg["drop"])
if seccomp:
    load_filter(every_socket=cfg["mode"] == "guard")
if cfg["mode"] == "guard":  # Python's own constructors, where no namespace takes the network
    import socket
    def _off(*args, **kwargs):
        raise OSError("network disabled in the sandbox")
    class _Socket(socket.socket):
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None and family != socket.AF_UNIX:
                _off()
            super().__init__(family, type, proto, fileno)
    socket.socket = socket.SocketType = _Socket
    for name in ("create_connection", "create_server", "getaddrinfo", "gethostbyname",
                 "gethostbyname_ex", "gethostbyaddr", "getnameinfo", "getfqdn"):
        setattr(socket, name, _off)
else:
    child = os.fork()
    if child:
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE: the program cannot open /proc/1/fd
        while True:  # as the namespace's init, reap the orphans too
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                break
        code = os.waitstatus_to_exitcode(status)
        os.write(cfg["status"], str(code).encode())
        os._exit(code if code >= 0 else 128 - code)
os.close(cfg["status"])
os.environ.pop("PWD", None)  # bwrap's --chdir sets it; the environment is the evaluator's
with open(sys.argv[0], "rb") as f:  # as runpy.run_path would, without importing it (5 ms)
    code = compile(f.read(), sys.argv[0], "exec")
sys.modules["__main__"] = main = types.ModuleType("__main__")
main.__file__, main.__loader__, main.__spec__, main.__cached__ = sys.argv[0], None, None, None
del cfg, libc, seccomp, f
exec(code, main.__dict__)
"""


def _argv(iso: Isolation, python: str, tmp: str, work: str, status: int) -> list[str]:
    """The command that runs the launcher, and through it the program in ``work``, under
    ``iso``; ``tmp`` (the parent of ``work``) holds the mount point of its root."""
    # -s -P with an environment we build is -I (= -E -s -P) except that PYTHONHASHSEED, which
    # -E would ignore, still fixes str hashes, so set order and output repeat from run to run.
    # -u: what was printed before a kill is in the file, not lost in a buffer.
    cfg: dict[str, object] = {
        "mode": iso.mechanism.value, "work": work, "status": status, "nobody": NOBODY,
        "drop": "nobody" if iso.nobody else "none", "denied": _DENIED,
        "seccomp": _libseccomp() if iso.seccomp else ""}
    launch = [python, "-s", "-P", "-u", "-c", _LAUNCHER]
    if iso.mechanism is Mechanism.GUARD:
        return [*launch, json.dumps(cfg), _MAIN]
    layout = _layout(python, work)
    if iso.mechanism is Mechanism.BWRAP:
        return [*_bwrap(layout, iso.nobody), "--chdir", work, "--", *launch, json.dumps(cfg),
                _MAIN]
    root = os.path.join(tmp, "root")
    os.mkdir(root)
    cfg.update(root=root, layout=layout, drop="nobody" if iso.nobody else "caps")
    unshare = [shutil.which("unshare") or "unshare", "--pid", "--mount", "--net", "--ipc",
               "--uts", "--fork", "--kill-child", *([] if iso.nobody else ["--map-root-user"])]
    return [*unshare, "--", *launch, json.dumps(cfg), _MAIN]


def _bwrap(layout: list[list[str]], as_root: bool) -> list[str]:
    """The bwrap command up to its ``--``: the namespaces, and ``layout`` as the root."""
    argv = [shutil.which("bwrap") or "bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent"]
    if not as_root:  # as root, no user namespace: uid 0 in one still owns root's files
        argv += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
    made = {"/", *(path for _, path, *_ in layout)}
    binds = [path for kind, path, *_ in layout if kind in ("ro", "rw", "link")]
    for kind, path, *arg in layout:
        # bwrap makes the missing parents of a bind as private as the host's (/root: 0700).
        for parent in map(str, reversed(Path(path).parents)) if kind in ("ro", "rw") else ():
            if parent not in made and not any(Path(parent).is_relative_to(b) for b in binds):
                argv += ["--perms", "0755", "--dir", parent]
                made.add(parent)
        size = ["--perms", "1777", "--size", *arg]
        argv += {"tmpfs": [*size, "--tmpfs", path], "proc": ["--proc", path],
                 "dev": ["--dev", path, *size, "--tmpfs", f"{path}/shm"],
                 "link": ["--symlink", *arg, path], "ro": ["--ro-bind", path, path],
                 "rw": ["--bind", path, path]}[kind]
    return [*argv, "--remount-ro", "/"]


def _layout(python: str, work: str) -> list[list[str]]:
    """The program's root, in order: (kind, path, argument) with kind tmpfs or dev (of
    argument bytes), proc, link (a symbolic link to the argument), ro or rw (the same path of
    the host, bound; a symbolic link's target)."""
    size = str(_TMPFS_BYTES)
    steps = [["tmpfs", "/tmp", size], ["dev", "/dev", size], ["proc", "/proc"]]
    bound: list[str] = []
    for path in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr",
                 "/etc/ld.so.cache", "/etc/localtime", *_python_dirs(python)):
        if path == "/" or any(path == step[1] for step in steps):
            continue  # never the whole host; each path once
        if os.path.islink(path) and path.count("/") == 1 and not os.path.isabs(os.readlink(path)):
            steps.append(["link", path, os.readlink(path)])  # /lib -> usr/lib (merged /usr)
        elif os.path.exists(path) and not any(_covers(b, path) for b in bound):
            steps.append(["ro", path])
            bound.append(path)
    return [*steps, ["rw", work]]


def _covers(bound: str, path: str) -> bool:
    """``path`` lies under ``bound`` on the same filesystem (a non-recursive bind shows it)."""
    if os.path.commonpath([bound, path]) != bound:
        return False
    try:
        return os.stat(bound).st_dev == os.stat(path).st_dev
    except OSError:
        return False


@functools.cache
def _python_dirs(python: str) -> tuple[str, ...]:
    """The directories ``python`` needs: its prefixes (a venv's and its base's) and those of
    its executable, as it names them (it finds its pyvenv.cfg by the unresolved path)."""
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        asked = subprocess.run([python, "-s", "-P", "-c", "import sys, json; print(json.dumps("
                                "[sys.prefix, sys.base_prefix, sys.exec_prefix, "
                                "sys.base_exec_prefix]))"], capture_output=True, text=True,
                               timeout=30, check=True)
        prefixes = json.loads(asked.stdout)
    exe = [os.path.dirname(os.path.abspath(python)), os.path.dirname(os.path.realpath(python))]
    return tuple(sorted({os.path.abspath(p) for p in [*prefixes, *exe]}))


@functools.cache
def _libseccomp() -> str:
    """The file name of libseccomp for ctypes, or "" where it is not installed."""
    return ctypes.util.find_library("seccomp") or ""
