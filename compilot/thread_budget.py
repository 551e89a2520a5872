"""The machine's cores shared among the compilot servers running on it.

Each server takes every core by default; three on a 2-core machine ran 6 llama.cpp threads and
their throughput fell from 16.8 to 2.6 requests a second. Each server now registers itself
with an open-file-description lock on a file of its own in a per-user runtime folder (the
kernel drops the lock when the process dies, so a killed server never counts), and uses its
share of the cores: ``max(1, cores // servers)``, counted again every few seconds so that a
server started or stopped later moves the others' share. ``model.nThreads`` set by the user
outranks it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from compilot.round_lock import Busy, held, locked

RUNTIME_ENV = "COMPILOT_RUNTIME_DIR"
"""Environment variable naming the folder where servers register (tests set their own)."""
RECOUNT_S = 2.0
"""Seconds between two counts of the running servers."""
STALE_S = 10.0
"""An unlocked registration older than this is a dead server's, and is removed."""


def runtime_dir() -> Path:
    """Where this user's servers register: ``$COMPILOT_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/compilot``, else a folder of the user's in the temp folder."""
    if os.environ.get(RUNTIME_ENV):
        return Path(os.environ[RUNTIME_ENV])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "compilot"
    return Path(tempfile.gettempdir()) / f"compilot-{os.getuid()}"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ThreadBudget:
    """This server's registration, and its share of the cores."""

    def __init__(self, configured: int | None = None, folder: Path | None = None) -> None:
        self.configured = configured
        self.folder = (folder or runtime_dir()) / "servers"
        self._stack = contextlib.ExitStack()
        self._share = configured or cores()
        self._counted = 0.0
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._stack.enter_context(locked(self.folder / f"{os.getpid()}.lock", "server"))
        except (Busy, OSError):
            pass  # not registered: the share is counted without this server
        self.threads()

    def servers(self) -> int:
        """The servers running now (this one included), forgetting the files of dead ones."""
        count = 0
        try:
            entries = list(self.folder.glob("*.lock"))
        except OSError:
            return 1
        for entry in entries:
            try:
                if held(entry):
                    count += 1
                elif time.time() - entry.stat().st_mtime > STALE_S:
                    entry.unlink(missing_ok=True)  # its server died (not one just starting)
            except OSError:
                continue
        return max(count, 1)

    def threads(self) -> int:
        """This server's threads now (recounted at most every RECOUNT_S seconds)."""
        if self.configured:
            return self.configured
        now = time.monotonic()
        if now - self._counted >= RECOUNT_S:
            self._counted = now
            self._share = max(1, cores() // self.servers())
        return self._share

    def close(self) -> None:
        """Leave the count (the lock file is removed)."""
        self._stack.close()
        with contextlib.suppress(OSError):
            (self.folder / f"{os.getpid()}.lock").unlink(missing_ok=True)
