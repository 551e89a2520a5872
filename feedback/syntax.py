"""Syntax with tree-sitter: parsers, the one rule for "does not parse", and the syntax check.

One walker (``problems``) decides what a syntax problem is, for the ranker's splice test and
for the label's syntax check alike: an ERROR node (covering whatever it holds), a MISSING
node, or a node that the grammar accepts empty but the compiler does not (tree-sitter-python
parses ``if a:`` with nothing after it as an if_statement with an empty block).

Grammars come from tree-sitter-language-pack 0.13.0, which ships them inside its wheel and so
loads offline (1.x downloads them at first use).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from tree_sitter import Language as Grammar
from tree_sitter import Node, Parser, Query, QueryCursor, Tree

from compilot.feedback.diagnostics import (
    SHOWN,
    CheckResult,
    CheckStatus,
    Diagnostic,
    Stage,
    encode,
    since_ms,
    status_of,
)
from compilot.feedback.limits import run_limited
from compilot.languages import language_for

_local = threading.local()

MUST_NOT_BE_EMPTY = {"python": frozenset({"block"})}
"""Nodes that a grammar accepts empty but the language's compiler does not."""
UNVETTED_TIMEOUT = 5.0
"""Seconds a grammar outside the vetted languages may take, in its child process: some of the
pack's grammars never return on ordinary input, and py-tree-sitter 0.26 has no parse timeout."""
UNVETTED_MEMORY_MB = 1024


@cache
def _grammar(name: str) -> Grammar:
    from tree_sitter_language_pack import get_language

    return get_language(name)


def parser_for(grammar: str) -> Parser | None:
    """A parser for ``grammar`` (one per thread: parsers are not thread-safe), or None."""
    parsers: dict[str, Parser | None] = _local.__dict__.setdefault("parsers", {})
    if grammar not in parsers:
        try:
            parsers[grammar] = Parser(_grammar(grammar))
        except (LookupError, ValueError, OSError):
            parsers[grammar] = None
    return parsers[grammar]


class ProblemKind(StrEnum):
    """What is wrong at a node."""

    ERROR = "error"
    MISSING = "missing"
    EMPTY = "empty"


@dataclass(frozen=True, order=True)
class Problem:
    """A syntax problem: byte span, (row, column) of its start, its kind and node type."""

    start: int
    end: int
    row: int
    column: int
    kind: ProblemKind
    node_type: str

    def diagnostic(self, source: bytes) -> Diagnostic:
        """The problem as a diagnostic of the syntax check."""
        if self.kind is ProblemKind.MISSING:
            message = f"missing {self.node_type!r}"
        elif self.kind is ProblemKind.EMPTY:
            message = f"empty {self.node_type}"
        else:
            text = source[self.start:self.end].split(b"\n", 1)[0].strip()[:30]
            message = f"syntax error at {text.decode('utf-8', 'replace')!r}"
        return Diagnostic(self.row, self.column, message, CheckStatus.SYNTAX)


def _problem(node: Node, kind: ProblemKind) -> Problem:
    row, column = node.start_point
    return Problem(node.start_byte, node.end_byte, row, column, kind, node.type)


@cache
def _empty_query(grammar: str) -> Query | None:
    types = MUST_NOT_BE_EMPTY.get(grammar)
    parser = parser_for(grammar) if types else None
    if types is None or parser is None or parser.language is None:
        return None
    return Query(parser.language, " ".join(f"({t}) @node" for t in sorted(types)))


def empty_nodes(tree: Tree, grammar: str, start: int = 0, end: int | None = None) -> list[Node]:
    """Nodes of the kinds in MUST_NOT_BE_EMPTY that are empty, overlapping [start, end]."""
    query = _empty_query(grammar)
    if query is None:
        return []
    cursor = QueryCursor(query)
    if end is not None:
        cursor.set_byte_range(max(0, start - 1), end + 1)
    return [node for node in cursor.captures(tree.root_node).get("node", [])
            if node.named_child_count == 0
            and (end is None or (node.start_byte <= end and node.end_byte >= start))]


def problems(tree: Tree, grammar: str | None, *, within: tuple[int, int] | None = None,
             limit: int | None = None) -> list[Problem]:
    """Every syntax problem of ``tree``, in document order: ERROR nodes (one covers its
    children), MISSING nodes, and empty nodes that must not be empty.

    The walk visits only subtrees that hold an error. ``within`` (a byte range) limits the
    search for empty nodes, which is a query over the tree, to the bytes around an edit: an
    insertion cannot empty a block elsewhere. ``limit`` caps the count.
    """
    found: list[Problem] = []
    stack = [tree.root_node]
    while stack and (limit is None or len(found) < limit):
        node = stack.pop()
        if node.is_missing:
            found.append(_problem(node, ProblemKind.MISSING))
        elif node.is_error:
            found.append(_problem(node, ProblemKind.ERROR))
        else:
            stack.extend(reversed([c for c in node.children if c.has_error or c.is_missing]))
    if grammar:
        start, end = within if within is not None else (0, None)
        room = None if limit is None else max(0, limit - len(found))
        found += [_problem(n, ProblemKind.EMPTY)
                  for n in empty_nodes(tree, grammar, start, end)[:room]]
    return sorted(found)


def _point_after(point: tuple[int, int], inserted: bytes) -> tuple[int, int]:
    row, column = point
    newlines = inserted.count(b"\n")
    if newlines:
        return row + newlines, len(inserted) - inserted.rfind(b"\n") - 1
    return row, column + len(inserted)


def _point(data: bytes, index: int) -> tuple[int, int]:
    """(row, column in bytes) of ``index`` in ``data``."""
    return data.count(b"\n", 0, index), index - (data.rfind(b"\n", 0, index) + 1)


def _common(a: bytes, b: bytes, part: Callable[[bytes, int], bytes],
            limit: int | None = None) -> int:
    """The longest k (at most ``limit``) with ``part(a, k) == part(b, k)``, by bisection: a
    few slice comparisons (memcmp) instead of a loop over every byte of a large file."""
    low, high = 0, min(len(a), len(b)) if limit is None else limit
    while low < high:
        middle = (low + high + 1) // 2
        if part(a, middle) == part(b, middle):
            low = middle
        else:
            high = middle - 1
    return low


class Trees:
    """The last syntax tree of each of a few documents, brought up to date by an incremental
    re-parse of what changed (one edit: the span between the common prefix and the common
    suffix of the two texts) instead of a parse from scratch. The parsers are per thread;
    the trees are kept under a lock, so that another thread can ``forget`` a closed document
    while the worker parses."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._trees: OrderedDict[tuple[str, str], tuple[bytes, Tree]] = OrderedDict()
        self._lock = threading.Lock()
        self.full = 0
        """Parses from scratch (a document seen for the first time)."""
        self.incremental = 0
        """Re-parses of an edited tree."""

    def tree(self, key: str, parser: Parser, grammar: str, source: bytes) -> Tree:
        """The tree of ``source``, the document ``key``'s text now."""
        slot = (key, grammar)
        with self._lock:
            known = self._trees.get(slot)
        if known is None:
            tree = parser.parse(source)
            self.full += 1
        else:
            old, tree = known
            if old != source:
                start = _common(old, source, lambda d, k: d[:k])
                limit = min(len(old), len(source)) - start
                tail = _common(old, source, lambda d, k: d[len(d) - k:], limit)
                old_end, new_end = len(old) - tail, len(source) - tail
                tree = tree.copy()
                tree.edit(start_byte=start, old_end_byte=old_end, new_end_byte=new_end,
                          start_point=_point(old, start), old_end_point=_point(old, old_end),
                          new_end_point=_point(source, new_end))
                tree = parser.parse(source, tree)
            self.incremental += 1
        with self._lock:
            self._trees[slot] = (source, tree)
            self._trees.move_to_end(slot)
            while len(self._trees) > self.size:
                self._trees.popitem(last=False)
        return tree

    def forget(self, key: str) -> None:
        """Drop a document's trees (it was closed)."""
        with self._lock:
            for slot in [s for s in self._trees if s[0] == key]:
                del self._trees[slot]

    def documents(self) -> list[str]:
        """The keys of the documents whose trees are kept, least recently used first."""
        with self._lock:
            return list(dict.fromkeys(key for key, _ in self._trees))


class Splicer:
    """Parses a document once, then tells for each insertion at one offset whether it
    introduces a syntax problem, by incremental re-parse of the edited tree. ``tree``: the
    document's tree already made (``Trees``), else it is parsed here."""

    def __init__(self, parser: Parser, source: bytes, offset: int,
                 grammar: str | None = None, tree: Tree | None = None) -> None:
        self.parser = parser
        self.grammar = grammar
        self.source = source
        self.offset = offset
        self.tree = tree if tree is not None else parser.parse(source)
        # Empty nodes are looked for only around the insertion (``new_problems``), so the
        # baseline needs them only there too: a query over a whole large file costs ms.
        self.baseline = problems(self.tree, grammar, within=(offset, offset))
        line_start = source.rfind(b"\n", 0, offset) + 1
        self.point = (source.count(b"\n", 0, offset), offset - line_start)

    def new_problems(self, inserted: str) -> list[Problem]:
        """Problems of the spliced document that the baseline does not have.

        A problem counts as new when it touches the inserted bytes, or when, shifted back to
        the original coordinates, it is not among the baseline's.
        """
        data = inserted.encode("utf-8")
        if not data:
            return []
        start, end = self.offset, self.offset + len(data)
        spliced = self.source[:start] + data + self.source[start:]
        edited = self.tree.copy()
        edited.edit(
            start_byte=start, old_end_byte=start, new_end_byte=end,
            start_point=self.point, old_end_point=self.point,
            new_end_point=_point_after(self.point, data),
        )
        tree = self.parser.parse(spliced, edited)
        baseline = {(p.start, p.end, p.kind) for p in self.baseline}
        fresh = []
        for p in problems(tree, self.grammar, within=(start, end)):
            touches = (p.start < end and p.end > start) or (
                p.kind is not ProblemKind.ERROR and start <= p.start <= end)
            shift = len(data) if p.start >= end else 0
            if touches or (p.start - shift, p.end - shift, p.kind) not in baseline:
                fresh.append(p)
        return fresh

    def parses(self, inserted: str) -> bool:
        """True when splicing ``inserted`` introduces no syntax problem."""
        return not self.new_problems(inserted)


# -- the syntax check ---------------------------------------------------------------------------

def _diagnostics(data: bytes, parser: Parser, grammar: str, limit: int) -> list[Diagnostic]:
    return [p.diagnostic(data) for p in problems(parser.parse(data), grammar, limit=limit)]


def _unvetted(source: str, grammar: str, started: float, limit: int) -> CheckResult:
    """A grammar outside the vetted languages, parsed in a child process with a timeout."""
    tool = f"tree-sitter {grammar} (subprocess)"
    with tempfile.TemporaryDirectory(prefix="compilot-syntax-") as tmp:
        path = Path(tmp) / "source"
        path.write_bytes(encode(source))
        done = run_limited([sys.executable, "-m", "compilot.feedback.syntax", grammar,
                            str(path), str(limit)], cwd=Path(tmp), timeout=UNVETTED_TIMEOUT,
                           memory_mb=UNVETTED_MEMORY_MB)
    if done.timed_out:
        return CheckResult(Stage.SYNTAX, CheckStatus.TIMEOUT, tool, (), since_ms(started))
    try:
        found = [Diagnostic(line, column, message, CheckStatus(kind))
                 for line, column, message, kind in json.loads(done.output.splitlines()[-1])]
    except (ValueError, IndexError, TypeError):
        return CheckResult(Stage.SYNTAX, CheckStatus.ERROR, tool,
                           (Diagnostic(0, 0, done.output[-300:]),), since_ms(started))
    return CheckResult(Stage.SYNTAX, status_of(found), tool, tuple(found), since_ms(started))


def check_syntax(source: str, language_id: str, *, limit: int = SHOWN) -> CheckResult:
    """tree-sitter's verdict on ``source``, at most ``limit`` diagnostics;
    "toolchain_missing" for a language without a grammar."""
    started = time.perf_counter()
    grammar = language_for(language_id).grammar
    if grammar is None and language_id and parser_for(language_id) is not None:
        return _unvetted(source, language_id, started, limit)
    parser = parser_for(grammar) if grammar else None
    if grammar is None or parser is None:
        return CheckResult(Stage.SYNTAX, CheckStatus.TOOLCHAIN_MISSING, "tree-sitter", (),
                           since_ms(started))
    found = _diagnostics(encode(source), parser, grammar, limit)
    return CheckResult(Stage.SYNTAX, status_of(found), f"tree-sitter {grammar}", tuple(found),
                       since_ms(started))


def _child(grammar: str, path: str, limit: str) -> None:
    """``python -m compilot.feedback.syntax GRAMMAR FILE LIMIT``: diagnostics as one JSON line."""
    parser = parser_for(grammar)
    if parser is None:
        raise SystemExit(f"no tree-sitter grammar {grammar!r}")
    found = _diagnostics(Path(path).read_bytes(), parser, grammar, int(limit))
    print(json.dumps([[d.line, d.column, d.message, d.kind] for d in found]))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
