"""Syntax with tree-sitter: parse, find ERROR/MISSING nodes, and test a splice cheaply.

Grammars come from tree-sitter-language-pack 0.13.0, which ships them inside its wheel and so
loads offline (1.x downloads them at first use).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache

from tree_sitter import Node, Parser, Query, QueryCursor, Tree

_local = threading.local()

# Nodes that a grammar accepts empty but the language's compiler does not: tree-sitter-python
# parses ``if a:`` with nothing after it as an if_statement with an empty block.
MUST_NOT_BE_EMPTY = {"python": frozenset({"block"})}


@cache
def _language(grammar: str):  # noqa: ANN202 - tree_sitter.Language
    from tree_sitter_language_pack import get_language

    return get_language(grammar)  # type: ignore[arg-type]


def parser_for(grammar: str) -> Parser | None:
    """A parser for ``grammar`` (one per thread: parsers are not thread-safe), or None."""
    cache: dict[str, Parser | None] = _local.__dict__.setdefault("parsers", {})
    if grammar not in cache:
        try:
            cache[grammar] = Parser(_language(grammar))
        except (LookupError, ValueError, OSError):
            cache[grammar] = None
    return cache[grammar]


@dataclass(frozen=True, order=True)
class SyntaxError_:
    """An ERROR or MISSING node: byte span, (row, column) of its start, and its kind."""

    start: int
    end: int
    row: int
    column: int
    missing: bool


def errors(tree: Tree) -> list[SyntaxError_]:
    """All ERROR and MISSING nodes, visiting only subtrees that contain one."""
    found: list[SyntaxError_] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, column = node.start_point
            found.append(SyntaxError_(node.start_byte, node.end_byte, row, column,
                                      node.is_missing))
            if node.is_missing:
                continue
        stack.extend(child for child in node.children if child.has_error or child.is_missing)
    return sorted(found)


@cache
def _empty_query(grammar: str) -> Query | None:
    types = MUST_NOT_BE_EMPTY.get(grammar)
    parser = parser_for(grammar) if types else None
    if parser is None or parser.language is None:
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


def _point_after(point: tuple[int, int], inserted: bytes) -> tuple[int, int]:
    row, column = point
    newlines = inserted.count(b"\n")
    if newlines:
        return row + newlines, len(inserted) - inserted.rfind(b"\n") - 1
    return row, column + len(inserted)


class Splicer:
    """Parses a document once, then tells for each insertion at one offset whether it
    introduces a syntax error, by incremental re-parse of the edited tree."""

    def __init__(self, parser: Parser, source: bytes, offset: int,
                 grammar: str | None = None) -> None:
        self.parser = parser
        self.grammar = grammar
        self.source = source
        self.offset = offset
        self.tree = parser.parse(source)
        self.baseline = errors(self.tree)
        line_start = source.rfind(b"\n", 0, offset) + 1
        self.point = (source.count(b"\n", 0, offset), offset - line_start)

    def new_errors(self, inserted: str) -> list[SyntaxError_]:
        """Errors of the spliced document that the baseline does not have.

        An error counts as new when it touches the inserted bytes, or when, shifted back to
        the original coordinates, it is not among the baseline's errors.
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
        baseline = {(e.start, e.end, e.missing) for e in self.baseline}
        fresh = []
        for err in errors(tree):
            touches = (err.start < end and err.end > start) or (
                err.missing and start <= err.start <= end
            )
            if touches:
                fresh.append(err)
                continue
            shift = len(data) if err.start >= end else 0
            if (err.start - shift, err.end - shift, err.missing) not in baseline:
                fresh.append(err)
        if self.grammar:
            for node in empty_nodes(tree, self.grammar, start, end):
                row, column = node.start_point
                fresh.append(SyntaxError_(node.start_byte, node.end_byte, row, column, True))
        return fresh

    def parses(self, inserted: str) -> bool:
        """True when splicing ``inserted`` introduces no ERROR or MISSING node."""
        return not self.new_errors(inserted)
