"""watchdog sees a followed file change on disk outside the editor."""

from __future__ import annotations

import threading
from pathlib import Path

from compilot.feedback.watcher import Watcher, read_text


def test_change_on_disk_is_reported(tmp_path: Path) -> None:
    followed = tmp_path / "a.py"
    other = tmp_path / "b.py"
    followed.write_text("x = 1\n")
    other.write_text("y = 1\n")
    seen: list[tuple[Path, str]] = []
    changed = threading.Event()

    def on_change(path: Path, text: str) -> None:
        seen.append((path, text))
        if text == "x = 2\n":
            changed.set()

    watcher = Watcher(on_change)
    try:
        watcher.watch(followed)
        other.write_text("y = 2\n")
        # write_text truncates, then writes: the watcher may first report the empty file (a
        # real intermediate state) and then the content; what counts is that the last
        # report is the content.
        followed.write_text("x = 2\n")
        assert changed.wait(10), seen
    finally:
        watcher.stop()
    assert all(path == followed.resolve() for path, _ in seen)
    assert seen[-1][1] == "x = 2\n"


def test_read_text_is_bounded_and_tolerant(tmp_path: Path) -> None:
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00abc")
    assert read_text(binary) == "\ufffd\ufffd\x00abc"
    assert read_text(binary, limit=2) is None
    assert read_text(tmp_path / "missing") is None
