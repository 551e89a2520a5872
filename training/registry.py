"""Versioned adapters and the `current` pointer the server follows.

Layout under ``<data dir>/adapters/``: one folder per version holding ``adapter.gguf``, the
PEFT adapter and ``metadata.json`` (method, data counts, hyperparameters, parent version,
evaluation, status); ``current`` is a small file naming the serving version ("base" for none).
A version becomes visible only when its folder is complete (built under a dot-name, then
renamed), and ``current`` is replaced atomically (write, fsync, rename), so a killed trainer
never leaves the server pointing at half an adapter.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BASE = "base"
POINTER = "current"
STAGING_PREFIX = ".staging-"


class RegistryError(ValueError):
    """A registry operation could not be done; the message says why."""


@dataclass(kw_only=True)
class AdapterInfo:
    """metadata.json of one adapter version."""

    version: str
    method: str
    parent: str
    created_at: float = field(default_factory=time.time)
    status: str = "candidate"
    """candidate | promoted | rejected | retired"""
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    """The training run's report: steps, trainable parameters, wall time, memory."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    """Versions that were current before this one was promoted (for rollback)."""
    promoted_at: float | None = None
    """When it last became the serving version (its on-policy data starts there)."""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Registry:
    """The adapters folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- reading ---------------------------------------------------------------------------

    def current(self) -> str:
        """The serving version ("base" when no adapter is promoted)."""
        try:
            name = (self.root / POINTER).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return BASE
        return name if name == BASE or (self.root / name / "metadata.json").is_file() else BASE

    def current_gguf(self) -> Path | None:
        """The GGUF adapter the server should apply, or None for the base model."""
        version = self.current()
        return None if version == BASE else self.root / version / "adapter.gguf"

    def info(self, version: str) -> AdapterInfo:
        path = self.root / version / "metadata.json"
        if not path.is_file():
            raise RegistryError(f"no adapter version {version!r} in {self.root}")
        return AdapterInfo(**json.loads(path.read_text(encoding="utf-8")))

    def versions(self) -> list[AdapterInfo]:
        """Every complete version, oldest first."""
        found = []
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and (
                    folder / "metadata.json").is_file():
                found.append(self.info(folder.name))
        return sorted(found, key=lambda i: (i.created_at, i.version))

    # -- writing ---------------------------------------------------------------------------

    def staging(self) -> Path:
        """A fresh folder to build a version in; invisible until ``add``."""
        path = self.root / f"{STAGING_PREFIX}{os.getpid()}-{time.time_ns()}"
        path.mkdir(mode=0o700)
        return path

    def add(self, staging: Path, info: AdapterInfo) -> Path:
        """Make a fully written staging folder the version ``info.version``."""
        if not (staging / "adapter.gguf").is_file():
            raise RegistryError(f"{staging} has no adapter.gguf; not adding {info.version}")
        target = self.root / info.version
        if target.exists() or info.version in (BASE, POINTER):
            raise RegistryError(f"adapter version {info.version!r} already exists")
        _write_atomic(staging / "metadata.json", json.dumps(asdict(info), indent=2))
        os.rename(staging, target)
        return target

    def _save(self, info: AdapterInfo) -> None:
        _write_atomic(self.root / info.version / "metadata.json",
                      json.dumps(asdict(info), indent=2))

    def promote(self, version: str) -> None:
        """Make ``version`` the serving adapter (atomic pointer switch)."""
        if version != BASE:
            info = self.info(version)
            info.history = [*info.history, self.current()]
            info.status = "promoted"
            info.promoted_at = time.time()
            self._save(info)
        _write_atomic(self.root / POINTER, version + "\n")

    def record(self, version: str, evaluation: dict[str, Any]) -> None:
        """Add figures to ``version``'s evaluation."""
        info = self.info(version)
        info.evaluation = {**info.evaluation, **evaluation}
        self._save(info)

    def reject(self, version: str, evaluation: dict[str, Any]) -> None:
        """Keep ``version`` with its figures, marked rejected."""
        info = self.info(version)
        info.status, info.evaluation = "rejected", {**info.evaluation, **evaluation}
        self._save(info)

    def rollback(self) -> str:
        """Serve what was current before the current version; returns it."""
        version = self.current()
        if version == BASE:
            raise RegistryError("the base model is serving; there is nothing to roll back")
        info = self.info(version)
        previous = info.history[-1] if info.history else BASE
        info.status = "retired"
        self._save(info)
        _write_atomic(self.root / POINTER, previous + "\n")
        return previous

    def clean(self) -> list[Path]:
        """Remove what a killed run left behind (staging folders, temp pointer files)."""
        removed = []
        for path in self.root.iterdir():
            if path.name.startswith(STAGING_PREFIX) or (
                    path.name.startswith(".") and path.name.endswith(".tmp")):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed
