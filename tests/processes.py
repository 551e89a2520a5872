"""Processes found from /proc, independently of the code under test."""

from __future__ import annotations

import os
from pathlib import Path


def live_with(word: str) -> list[int]:
    """Live processes (not zombies) other than this one whose command line holds ``word``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if word.encode() in argv and state not in ("Z", "X") and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found
