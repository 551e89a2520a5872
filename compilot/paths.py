"""The data dir and what lives in it: every file and folder name inside it is named here once.

The server, the trainer and the command line meet only through these files: the event store,
the adapters folder with its ``current`` pointer, the round lock, the trainer's log.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from compilot.settings import APP, Settings

DATA_DIR_ENV = "COMPILOT_DATA_DIR"
"""Environment variable naming the data dir; it outranks the ``data_dir`` setting."""
CACHE_DIR_ENV = "COMPILOT_CACHE_DIR"
"""Environment variable naming the user cache (default ``~/.cache/compilot``)."""


def user_cache() -> Path:
    """What compilot derives from files outside any data dir and reuses across data dirs (the
    served copies of GGUFs, ``server/requantize.py``): safe to delete, remade on use."""
    if env := os.environ.get(CACHE_DIR_ENV):
        return Path(env)
    return Path(platformdirs.user_cache_dir(APP))


@dataclass(frozen=True)
class DataDir:
    """One data dir: ``~/.local/share/compilot`` unless the environment or settings say."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> DataDir:
        """The data dir: ``COMPILOT_DATA_DIR``, then the setting, then XDG."""
        if env := os.environ.get(DATA_DIR_ENV):
            return cls(Path(env))
        if settings.data_dir:
            return cls(Path(settings.data_dir).expanduser())
        return cls(Path(platformdirs.user_data_dir(APP)))

    @property
    def events_db(self) -> Path:
        """The event store (SQLite in WAL mode)."""
        return self.root / "events.db"

    @property
    def adapters(self) -> Path:
        """One folder per adapter version, and the ``current`` pointer."""
        return self.root / "adapters"

    @property
    def reports(self) -> Path:
        """HTML reports (with their figures as JSON beside them)."""
        return self.root / "reports"

    @property
    def evaluations(self) -> Path:
        """The results of `compilot eval`, one JSON file each."""
        return self.root / "evaluations"

    @property
    def cache(self) -> Path:
        """What is made once and reused: the training checkpoint of each GGUF."""
        return self.root / "cache"

    @property
    def demo_runs(self) -> Path:
        """One folder per `compilot demo` run (its own data dir)."""
        return self.root / "demo"

    @property
    def trainer_log(self) -> Path:
        """The background trainer's log, and the output of rounds started by the server."""
        return self.root / "trainer.log"

    @property
    def trainer_state(self) -> Path:
        """When the background trainer last started a round, and how it ended."""
        return self.root / "trainer-state.json"

    @property
    def trainer_lock(self) -> Path:
        """Held by the one background trainer of this data dir."""
        return self.root / "trainer.lock"

    @property
    def round_lock(self) -> Path:
        """Held by the one training round running on this data dir."""
        return self.root / "round.lock"

    def create(self) -> Path:
        """Make the data dir owner-only (created so when missing; an existing one of ours
        that others can read or write is tightened to 0700); its root."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = self.root.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            self.root.chmod(0o700)
        return self.root
