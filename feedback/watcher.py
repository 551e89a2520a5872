"""Watch files on disk (watchdog): changes made outside the editor to followed files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 10 << 20


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str | None:
    """A source file's text (undecodable bytes replaced), or None if unreadable or too big."""
    try:
        if path.stat().st_size > limit:
            return None
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("modified", "created", "moved", "closed"):
            return
        raw = event.dest_path if event.event_type == "moved" else event.src_path
        path = Path(raw.decode() if isinstance(raw, bytes) else raw)
        if path in self.watcher.files:
            text = read_text(path)
            if text is not None:
                self.watcher.on_change(path, text)


class Watcher:
    """Calls ``on_change(path, text)`` when a watched file changes on disk (from watchdog's
    thread: the callback must hand over to its own loop)."""

    def __init__(self, on_change: Callable[[Path, str], None]) -> None:
        self.on_change = on_change
        self.files: set[Path] = set()
        self._dirs: set[Path] = set()
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()

    def watch(self, path: Path) -> None:
        """Report changes of ``path`` (its folder is watched)."""
        path = path.resolve()
        self.files.add(path)
        if path.parent not in self._dirs and path.parent.is_dir():
            self._dirs.add(path.parent)
            self._observer.schedule(_Handler(self), str(path.parent), recursive=False)

    def forget(self, path: Path) -> None:
        """Stop reporting changes of ``path``."""
        self.files.discard(path.resolve())

    def stop(self) -> None:
        """Stop watching."""
        self._observer.stop()
