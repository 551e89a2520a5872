"""The adapter pointer: which version serves, as the trainer writes it and the server reads it.

``<data dir>/adapters/current`` is a small file naming the serving version ("base" for none);
each version is a folder holding ``adapter.gguf`` (what llama.cpp applies) and
``metadata.json``. The pointer is replaced atomically (write, fsync, rename), so a reader
never sees half a name, and a name whose folder is not complete reads as the base.
"""

from __future__ import annotations

import os
import re
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


MAX_POINTER_BYTES = 256
"""A pointer longer than this is not a version name: it reads as the base."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_version_name(name: str) -> bool:
    """Whether ``name`` can name a version: one folder inside ``adapters/`` (letters, digits,
    ``.``, ``_`` and ``-``; no separators, no ``..``)."""
    return bool(_NAME.fullmatch(name)) and ".." not in name


def current(adapters: Path) -> str:
    """The serving version in the ``adapters`` folder ("base" when none is promoted, and when
    the pointer is not the name of a complete version inside the folder: a path such as
    ``../../x``, an oversized or binary file, a folder without its metadata)."""
    try:
        with open(adapters / POINTER, "rb") as f:
            raw = f.read(MAX_POINTER_BYTES + 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return BASE
    except OSError:
        return BASE
    if len(raw) > MAX_POINTER_BYTES:
        return BASE
    try:
        name = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return BASE
    if name == BASE or not is_version_name(name):
        return BASE
    folder = adapters / name
    try:
        inside = folder.resolve().parent == adapters.resolve()
    except OSError:
        return BASE
    return name if inside and (folder / METADATA_FILE).is_file() else BASE


def adapter_gguf(adapters: Path, version: str) -> Path | None:
    """The GGUF adapter of ``version``, or None for the base model."""
    return None if version == BASE else adapters / version / ADAPTER_FILE


def point_to(adapters: Path, version: str) -> None:
    """Make ``version`` the serving one (atomic)."""
    if version != BASE and not is_version_name(version):
        raise ValueError(f"{version!r} is not a version name (one folder in {adapters})")
    write_atomic(adapters / POINTER, version + "\n")
