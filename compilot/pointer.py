"""The adapter pointer: which version serves, as the trainer writes it and the server reads it.

``<data dir>/adapters/current`` is a small file naming the serving version ("base" for none);
each version is a folder holding ``adapter.gguf`` (what llama.cpp applies) and
``metadata.json``. The pointer is replaced atomically (write, fsync, rename), so a reader
never sees half a name, and a name whose folder is not complete reads as the base.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE = "base"
"""The version name of the base model alone (no adapter)."""
POINTER = "current"
"""The pointer's file name inside the adapters folder."""
ADAPTER_FILE = "adapter.gguf"
METADATA_FILE = "metadata.json"


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` so that readers see the old or the new file, never a mix."""
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


def current(adapters: Path) -> str:
    """The serving version in the ``adapters`` folder ("base" when none is promoted)."""
    try:
        name = (adapters / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return BASE
    return name if name == BASE or (adapters / name / METADATA_FILE).is_file() else BASE


def adapter_gguf(adapters: Path, version: str) -> Path | None:
    """The GGUF adapter of ``version``, or None for the base model."""
    return None if version == BASE else adapters / version / ADAPTER_FILE


def point_to(adapters: Path, version: str) -> None:
    """Make ``version`` the serving one (atomic)."""
    write_atomic(adapters / POINTER, version + "\n")
