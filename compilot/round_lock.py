"""One training round at a time, whoever starts it: the round lock, and a round as a child.

The locks are ``flock`` locks on files in the data dir: the kernel drops them when their
holder dies, so a killed round never blocks the next. The server's "train now" and the
background trainer both start a round as a child process (`compilot train`), which takes the
round lock itself: a race between two starts still runs one round.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
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


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold the flock at ``path`` (non-blocking), or raise Busy naming the holder's pid."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Busy(f"another {what} is running (pid {holder}; lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def round_locked(data: DataDir) -> contextlib.AbstractContextManager[None]:
    """Hold the round lock of ``data`` (raises Busy when a round runs)."""
    return locked(data.round_lock, "training round")


def round_running(data: DataDir) -> bool:
    """Whether some process holds the round lock now."""
    try:
        with round_locked(data):
            return False
    except Busy:
        return True


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
    with open(data.trainer_log, "ab") as out:
        out.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} round started on request\n".encode())
        out.flush()
        child = subprocess.Popen(round_command(), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                 preexec_fn=(lambda: os.nice(nice)) if nice else None)
    threading.Thread(target=child.wait, name="round-reaper", daemon=True).start()  # no zombie
    return child.pid
