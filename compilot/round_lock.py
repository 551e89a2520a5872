"""One training round at a time, whoever starts it: the round lock, and a round as a child.

The locks are open-file-description locks (``fcntl`` ``F_OFD_SETLK``, Linux 3.15) on files in
the data dir: the kernel drops them when their holder dies, so a killed round never blocks the
next, and unlike ``flock`` they can be tested without being taken (``F_OFD_GETLK``): asking
whether a round runs (`compilot.status`, every few seconds from an editor) never makes a round
that starts at that moment fail. The server's "train now" and the background trainer both
start a round as a child process (`compilot train`), which takes the round lock itself: a race
between two starts still runs one round.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from compilot.paths import DATA_DIR_ENV, DataDir
from compilot.settings import SETTINGS_ENV, Settings, as_dict


class Busy(RuntimeError):
    """Another process holds the lock; the message names it."""


_FLOCK = struct.Struct("hhqqi4x")
"""struct flock as Linux lays it out on 64-bit machines: type, whence, start, len, pid."""


def _whole_file(kind: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0)


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold the lock at ``path`` (non-blocking), or raise Busy naming the holder's pid."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _whole_file(fcntl.F_WRLCK))
        except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Busy(f"another {what} is running (pid {holder}; lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the only descriptor of the open file releases the lock


def held(path: Path) -> bool:
    """Whether some process holds the lock at ``path``, asked without taking it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _whole_file(fcntl.F_WRLCK))
    finally:
        os.close(fd)
    return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK


def round_locked(data: DataDir) -> contextlib.AbstractContextManager[None]:
    """Hold the round lock of ``data`` (raises Busy when a round runs)."""
    return locked(data.round_lock, "training round")


def round_running(data: DataDir) -> bool:
    """Whether some process holds the round lock now (the lock is not touched)."""
    return held(data.round_lock)


def round_command() -> list[str]:
    """The child that runs one round (the same interpreter and package as its parent)."""
    return [sys.executable, "-m", "compilot", "train", "--quiet"]


def start_round(data: DataDir, settings: Settings) -> int:
    """Start one round in a detached child at the trainer's CPU priority, its output appended
    to the trainer's log; returns its pid. Raises Busy when a round is running already.

    The child gets ``settings`` through ``COMPILOT_SETTINGS`` (the editor's options included)
    and this data dir through ``COMPILOT_DATA_DIR``.
    """
    if round_running(data):
        raise Busy(f"a training round is running already (lock {data.round_lock})")
    data.create()
    env = {**os.environ, SETTINGS_ENV: json.dumps(as_dict(settings)),
           DATA_DIR_ENV: str(data.root)}
    nice = settings.trainer.nice
    with os.fdopen(os.open(data.trainer_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
                   "ab") as out:
        out.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} round started on request\n".encode())
        out.flush()
        child = subprocess.Popen(round_command(), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                 preexec_fn=(lambda: os.nice(nice)) if nice else None)
    threading.Thread(target=child.wait, name="round-reaper", daemon=True).start()  # no zombie
    return child.pid
