"""Versioned adapters and the `current` pointer the server follows.

Layout under ``<data dir>/adapters/`` (the pointer and the version folder's file names are the
server's contract, ``compilot.pointer``): one folder per version holding ``adapter.gguf``, the
PEFT adapter (``peft/``) and ``metadata.json`` (method, data counts, hyperparameters, parent
version, evaluation, status); ``current`` is a small file naming the serving version ("base"
for none).
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
from enum import StrEnum
from pathlib import Path
from typing import Any

from compilot import pointer
from compilot.pointer import ADAPTER_FILE, BASE, METADATA_FILE, POINTER

STAGING_PREFIX = ".staging-"
PEFT_DIR = "peft"
"""The PEFT adapter inside a version folder (what the next round continues)."""


class AdapterStatus(StrEnum):
    """Where a version stands."""

    CANDIDATE = "candidate"
    """Trained and converted; not judged yet (or a round died before the gate)."""
    PROMOTED = "promoted"
    REJECTED = "rejected"
    """The gate kept it out; its figures say why."""
    RETIRED = "retired"
    """Rolled back."""


class RegistryError(ValueError):
    """A registry operation could not be done; the message says why."""


@dataclass(kw_only=True)
class AdapterInfo:
    """metadata.json of one adapter version."""

    version: str
    method: str
    parent: str
    created_at: float = field(default_factory=time.time)
    status: AdapterStatus = AdapterStatus.CANDIDATE
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    """The training run's report: steps, trainable parameters, wall time, memory."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    """Versions that were current before this one was promoted (for rollback)."""
    promoted_at: float | None = None
    """When it last became the serving version (its on-policy data starts there)."""


class Registry:
    """The adapters folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    # -- reading ---------------------------------------------------------------------------

    def current(self) -> str:
        """The serving version ("base" when no adapter is promoted)."""
        return pointer.current(self.root)

    def gguf(self, version: str) -> Path | None:
        """The GGUF adapter of ``version`` (None for the base model)."""
        return pointer.adapter_gguf(self.root, version)

    def peft(self, version: str) -> Path | None:
        """The PEFT adapter of ``version`` (None for the base model)."""
        return None if version == BASE else self.root / version / PEFT_DIR

    def info(self, version: str) -> AdapterInfo:
        """The metadata of ``version``; RegistryError when there is no such version."""
        path = self.root / version / METADATA_FILE
        if not path.is_file():
            raise RegistryError(f"no adapter version {version!r} in {self.root}")
        raw = json.loads(path.read_text(encoding="utf-8"))
        return AdapterInfo(**{**raw, "status": AdapterStatus(raw.get("status", "candidate"))})

    def versions(self) -> list[AdapterInfo]:
        """Every complete version, oldest first."""
        found = []
        for folder in self.root.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and (
                    folder / METADATA_FILE).is_file():
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
        if not (staging / ADAPTER_FILE).is_file():
            raise RegistryError(f"{staging} has no {ADAPTER_FILE}; not adding {info.version}")
        target = self.root / info.version
        if target.exists() or info.version in (BASE, POINTER):
            raise RegistryError(f"adapter version {info.version!r} already exists")
        pointer.write_atomic(staging / METADATA_FILE, json.dumps(asdict(info), indent=2))
        os.rename(staging, target)
        return target

    def _save(self, info: AdapterInfo) -> None:
        pointer.write_atomic(self.root / info.version / METADATA_FILE,
                             json.dumps(asdict(info), indent=2))

    def promote(self, version: str) -> None:
        """Make ``version`` the serving adapter (atomic pointer switch)."""
        if version != BASE:
            info = self.info(version)
            info.history = [*info.history, self.current()]
            info.status = AdapterStatus.PROMOTED
            info.promoted_at = time.time()
            self._save(info)
        pointer.point_to(self.root, version)

    def record(self, version: str, evaluation: dict[str, Any]) -> None:
        """Add figures to ``version``'s evaluation."""
        info = self.info(version)
        info.evaluation = {**info.evaluation, **evaluation}
        self._save(info)

    def reject(self, version: str, evaluation: dict[str, Any]) -> None:
        """Keep ``version`` with its figures, marked rejected."""
        info = self.info(version)
        info.status, info.evaluation = AdapterStatus.REJECTED, {**info.evaluation, **evaluation}
        self._save(info)

    def rollback(self) -> str:
        """Serve what was current before the current version; returns it."""
        version = self.current()
        if version == BASE:
            raise RegistryError("the base model is serving; there is nothing to roll back")
        info = self.info(version)
        previous = info.history[-1] if info.history else BASE
        info.status = AdapterStatus.RETIRED
        self._save(info)
        pointer.point_to(self.root, previous)
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
