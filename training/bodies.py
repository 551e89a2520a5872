"""Function bodies of a user's source file, found with tree-sitter, as fill-in-the-middle holes.

``compilot bootstrap`` hides each body of the user's own code and lets the model write it back.
The cut is the one training/corpus.py makes in the standard library, and the one the editor's
completion sees when a body is typed from scratch: the cursor after the indentation of the
first body line, the reference up to the end of the last body line (no line break), the suffix
from that line break on (for brace languages it starts with the closing brace's line). So
``prefix + reference + suffix`` is the file, byte for byte. A Python docstring stays in the
prefix, as corpus.py keeps it: it is the hint a user would have written first.

Bodies that the editor would not see this way are left out: a first statement on the line of
the opening brace (or colon, or docstring), a closing brace on the line of the last statement,
tabs in the indentation (Hole.cursor counts the columns of an ASCII, space-indented prefix).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from tree_sitter import Node, Point

from compilot.feedback.syntax import parser_for
from compilot.languages import language_for
from compilot.training.corpus import Hole

LANGUAGES = frozenset({"python", "c", "cpp", "java", "javascript", "javascriptreact",
                       "typescript", "typescriptreact", "rust"})
"""The LSP language ids whose bodies ``bodies`` finds."""

_JS_FUNCTIONS = frozenset({"function_declaration", "generator_function_declaration",
                           "function_expression", "generator_function", "method_definition",
                           "arrow_function"})
_JS_SCOPES = frozenset({"class_declaration", "class", "object"})
_TS_SCOPES = _JS_SCOPES | {"abstract_class_declaration", "internal_module"}

_FUNCTIONS = {
    "python": frozenset({"function_definition"}),
    "c": frozenset({"function_definition"}),
    "cpp": frozenset({"function_definition"}),
    "java": frozenset({"method_declaration", "constructor_declaration",
                       "compact_constructor_declaration"}),
    "javascript": _JS_FUNCTIONS,
    "typescript": _JS_FUNCTIONS,
    "tsx": _JS_FUNCTIONS,
    "rust": frozenset({"function_item"}),
}
"""By grammar: the nodes whose ``body`` field is a function body."""

_SCOPES = {
    "python": frozenset({"class_definition"}),
    "c": frozenset(),
    "cpp": frozenset({"namespace_definition", "class_specifier", "struct_specifier",
                      "union_specifier"}),
    "java": frozenset({"class_declaration", "interface_declaration", "enum_declaration",
                       "record_declaration"}),
    "javascript": _JS_SCOPES,
    "typescript": _TS_SCOPES,
    "tsx": _TS_SCOPES,
    "rust": frozenset({"impl_item", "trait_item", "mod_item"}),
}
"""By grammar: the nodes besides functions whose names qualify the functions inside them."""

_SEPARATOR = {"cpp": "::", "rust": "::"}
_MACRO_GRAMMARS = frozenset({"c", "cpp"})
"""Grammars whose files count as parsed with errors in them: tree-sitter does not expand the
preprocessor, so real C and C++ often hold an error node somewhere (380 of llama.cpp's 1,100
source files did); the functions without one are whole and are kept. A file of another
language with an error is skipped as not parsing."""
"""How a qualified name is joined, where the language writes it other than with a dot."""

_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})

_BINDINGS = {"variable_declarator": "name", "pair": "key", "assignment_expression": "left",
             "field_definition": "property", "public_field_definition": "name"}
"""JavaScript/TypeScript: the field of a parent that names the anonymous function (or class,
or object) it holds: ``const f = () => {...}``, ``{f: function () {...}}``, ``this.f = ...``.
A function bound to nothing (a callback) has no readable name and makes no hole."""


def bodies(source: str, language_id: str, path: str, *, min_lines: int = 2,
           max_lines: int = 12, partial: bool = False) -> list[Hole] | None:
    """The holes of ``source``, one per function body of ``min_lines`` to ``max_lines`` lines,
    in document order; None when the file does not parse (the caller counts it as skipped),
    except for C and C++, where only the functions that hold a parse error are left out, and
    for any language with ``partial`` (``source`` is a window cut from a file: it may start
    or end inside a block).

    Names are qualified by the enclosing classes, namespaces, impls and functions
    (``Class.method``, ``ns::Foo::bar``) and made unique in the file by ``#2``, ``#3`` in
    document order, counting every function, kept or not, so that the name of a body does not
    depend on the line bounds.
    """
    if language_id not in LANGUAGES:
        raise ValueError(f"bodies: no rules for the language {language_id!r}; "
                         f"the languages are {', '.join(sorted(LANGUAGES))}")
    grammar = language_for(language_id).grammar
    parser = parser_for(grammar) if grammar else None
    if grammar is None or parser is None:
        raise RuntimeError(f"bodies: the tree-sitter grammar for {language_id!r} is missing; "
                           "reinstall tree-sitter-language-pack")
    root = parser.parse(source.encode("utf-8")).root_node
    if root.has_error and grammar not in _MACRO_GRAMMARS and not partial:
        return None
    lines = source.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    holes = []
    seen: Counter[str] = Counter()
    for node in _preorder(root):
        if node.type not in _FUNCTIONS[grammar]:
            continue
        name = _qualified(node, grammar)
        if name is None:
            continue
        seen[name] += 1
        if node.has_error:
            continue
        span = _body_span(node, grammar)
        if span is None or not min_lines <= span[1].row - span[0].row + 1 <= max_lines:
            continue
        first, last = span[0].row, span[1].row
        indents = [line[:len(line) - len(line.lstrip(" \t"))] for line in lines[first:last + 1]]
        # the column is in bytes, the indentation ASCII: equal when nothing precedes the node
        if any("\t" in indent for indent in indents) or span[0].column != len(indents[0]):
            continue
        cursor = starts[first] + len(indents[0])
        end = starts[last] + len(lines[last].removesuffix("\r"))
        unique = name if seen[name] == 1 else f"{name}#{seen[name]}"
        holes.append(Hole(unique, path, source[:cursor], source[end:], source[cursor:end]))
    return holes


def _preorder(root: Node) -> Iterator[Node]:
    """The named nodes under ``root`` in document order, each before the nodes inside it;
    nothing inside an ERROR node (what tree-sitter could not place is no function)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        if not node.is_error:
            stack.extend(reversed(node.named_children))


def _body_span(function: Node, grammar: str) -> tuple[Point, Point] | None:
    """Where the body's hole starts and ends, or None when the body has no hole to cut.

    The hole starts with the body's first node (a comment, too) on a row below the opening
    brace, colon or docstring; for brace languages it ends above the closing brace's row, for
    Python with its last statement. A body of only comments has nothing to complete.
    """
    body = function.child_by_field_name("body")
    if body is None:
        return None
    if grammar == "python":
        if body.type != "block":
            return None
        colon = next((c for c in function.children if c.type == ":"), None)
        if colon is None:
            return None
        opening = colon.end_point.row
        # tree-sitter-python hangs the comments above the first statement on the function
        inside = [c for c in function.children
                  if c.type in _COMMENTS and c.start_byte >= colon.end_byte] + body.named_children
        statements = [c for c in inside if c.type not in _COMMENTS]
        if statements and _is_docstring(statements[0]):
            opening = statements[0].end_point.row
            inside = inside[inside.index(statements[0]) + 1:]
            statements = statements[1:]
        if not statements:
            return None
        # the last statement, not the block's end: tree-sitter-python puts the comments that
        # follow a body, at any indentation, inside its block
        last = statements[-1]
        closing = last.end_point.row + 1
    else:
        if not body.children or body.children[0].type != "{" or body.children[-1].type != "}":
            return None
        inside = body.named_children
        if all(c.type in _COMMENTS for c in inside):
            return None
        opening, closing = body.start_point.row, body.end_point.row
        last = inside[-1]
    # a comment after the opening brace (colon, docstring) stays there, in the prefix
    first = next(c for c in inside if c.type not in _COMMENTS or c.start_point.row > opening)
    if first.start_point.row <= opening or last.end_point.row >= closing:
        return None
    return first.start_point, last.end_point


def _is_docstring(statement: Node) -> bool:
    """Whether the first statement of a Python body is its docstring: a lone string
    (tree-sitter-python has no expression_statement node: the string is the statement)."""
    return statement.type in ("string", "concatenated_string")


def _text(node: Node) -> str:
    """The source text of ``node``, its runs of whitespace made single spaces."""
    return " ".join((node.text or b"").decode("utf-8").split())


def _name(node: Node) -> str | None:
    """The name a function or scope is declared with, or bound to; None: anonymous."""
    named = node.child_by_field_name("type" if node.type == "impl_item" else "name")
    if named is None and node.type == "function_definition":
        named = _declarator(node)
    parent = node.parent
    if named is None and parent is not None and parent.type in _BINDINGS:
        named = parent.child_by_field_name(_BINDINGS[parent.type])
    if named is not None and named.type == "generic_type":  # Rust: impl<T> Foo<T> -> Foo
        named = named.child_by_field_name("type")
    return _text(named) if named is not None else None


def _declarator(function: Node) -> Node | None:
    """C/C++: the declared name of a function_definition (identifier, ``Foo::bar``,
    ``operator==``, ``~Foo``), below the pointer and reference declarators of its return."""
    current = function.child_by_field_name("declarator")
    while current is not None and current.type != "function_declarator":
        inner = current.child_by_field_name("declarator")
        current = inner if inner is not None else (
            current.named_children[-1] if current.named_children else None)
    return current.child_by_field_name("declarator") if current is not None else None


def _qualified(function: Node, grammar: str) -> str | None:
    """``Outer.inner``: the function's name after those of the named scopes and functions
    around it; None when the function itself is anonymous."""
    own = _name(function)
    if own is None:
        return None
    parts = [own]
    kinds = _FUNCTIONS[grammar] | _SCOPES[grammar]
    scope = function.parent
    while scope is not None:
        if scope.type in kinds and (name := _name(scope)) is not None:
            parts.append(name)
        scope = scope.parent
    return _SEPARATOR.get(grammar, ".").join(reversed(parts))
