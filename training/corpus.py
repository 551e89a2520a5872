"""Function bodies cut out of the Python standard library that ships with the interpreter.

Each task is a real source file with one function body removed: the cursor sits on the first
body line after the docstring, the reference is the removed body. Used by the demo, the
benchmarks and the held-out evaluation; no download needed.
"""

from __future__ import annotations

import ast
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hole:
    """A document with a hole at ``len(prefix)`` and the code that filled it."""

    name: str
    path: str
    prefix: str
    suffix: str
    reference: str

    @property
    def document(self) -> str:
        """The file as it was, with the body in place."""
        return self.prefix + self.suffix

    @property
    def cursor(self) -> tuple[int, int]:
        """(line, column) of the cursor; the prefix is ASCII-indented, so columns agree."""
        lines = self.prefix.split("\n")
        return len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(root.glob("*.py")) if not p.name.startswith("_")]
    return files


def _tasks_in(path: Path, *, max_body_lines: int, max_file_chars: int) -> list[Hole]:
    try:
        source = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    if len(source) > max_file_chars or "\t" in source:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines(keepends=True)
    tasks = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if ast.get_docstring(node) is None or len(node.body) < 2 or node.end_lineno is None:
            continue
        first, last = node.body[1].lineno, node.end_lineno
        if last - first + 1 > max_body_lines or node.body[1].col_offset == 0:
            continue
        if node.body[0].end_lineno is None or node.body[0].end_lineno >= first:
            continue
        indent = " " * node.body[1].col_offset
        start_line = lines[first - 1]
        if not start_line.startswith(indent) or start_line[len(indent)] in " \t":
            continue
        head = "".join(lines[: first - 1]) + indent
        body = "".join(lines[first - 1 : last])[len(indent):].rstrip("\n")
        tail = "".join(lines[last:])
        tasks.append(Hole(f"{path.stem}.{node.name}", str(path), head, "\n" + tail, body))
    return tasks


def stdlib_holes(count: int, *, seed: int = 0, max_body_lines: int = 6,
                 max_file_chars: int = 60_000) -> list[Hole]:
    """``count`` tasks from distinct functions, drawn reproducibly by ``seed``."""
    everything: list[Hole] = []
    for path in _stdlib_files():
        everything += _tasks_in(path, max_body_lines=max_body_lines,
                                max_file_chars=max_file_chars)
    if not everything:
        raise RuntimeError("no Python standard library sources found to build tasks from")
    rng = random.Random(seed)
    rng.shuffle(everything)
    return everything[:count]
