"""Cut a raw model continuation where the code being completed ends.

Small chat models write a few lines of code, close a markdown fence and go on in prose. This
module turns such raw text into what an editor should show: it cuts at a fence, at prose, at
the end of the block being completed (indentation for Python, bracket depth for brace
languages) and drops text that repeats what already follows the cursor. Pure functions on
strings; the syntax-aware part (longest prefix that parses) lives in rank.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from compilot.languages import COMMON_STOPS, Language

# Lines a chat model writes after its code: "Explanation:", "This function returns ...".
_PROSE_MARKERS = re.compile(
    r"^(?:#+\s|\*\*|Explanation|Output|Example(?: usage)?|Usage|Note|Answer|Solution|Step \d|"
    r"Here(?:'s| is)|This (?:code|function|program|will|is)|The (?:above|function|code)|"
    r"In this|Let's|I )\b",
)
_CODE_CHARS = re.compile(r"[=(){}\[\];<>]|->|::|\b(?:return|def|class|import)\b")
_WORD = re.compile(r"^[A-Za-z][A-Za-z'’,-]*[.,:;!?]?$")
_CLOSERS = {")": "(", "]": "[", "}": "{"}


@dataclass(frozen=True)
class Cursor:
    """The text around the cursor that decides where a completion ends."""

    line_prefix: str
    """Text of the cursor line before the cursor."""
    line_suffix: str
    """Text of the cursor line after the cursor."""
    next_line: str
    """The first non-blank line after the cursor line ('' at the end of the document)."""

    @classmethod
    def of(cls, prefix: str, suffix: str) -> Cursor:
        """The cursor between ``prefix`` and ``suffix``."""
        line_prefix = prefix[prefix.rfind("\n") + 1:]
        head, _, rest = suffix.partition("\n")
        following = ""
        start = 0
        while start < len(rest):  # the first non-blank line, without splitting the suffix
            end = rest.find("\n", start)
            line = rest[start:] if end < 0 else rest[start:end]
            if line.strip():
                following = line
                break
            if end < 0:
                break
            start = end + 1
        return cls(line_prefix, head, following)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def is_prose(line: str, language: Language) -> bool:
    """True for a line of natural language that no language here would take as code."""
    text = line.strip()
    if not text or (language.comment and text.startswith(language.comment)):
        return False
    if _PROSE_MARKERS.match(text):
        return True
    words = text.split()
    return (
        len(words) >= 4
        and text[0].isupper()
        and not _CODE_CHARS.search(text)
        and sum(bool(_WORD.match(w)) for w in words) >= 0.8 * len(words)
    )


def _cut_at_stops(text: str, language: Language) -> str:
    for stop in language.stops + COMMON_STOPS:
        index = text.find(stop)
        if index >= 0:
            text = text[:index]
    return text


def _single_line(cursor: Cursor) -> bool:
    """Mid-line with text after the cursor: complete this line only (as Copilot does)."""
    return bool(cursor.line_suffix.strip())


def _drop_line_overlap(text: str, line_suffix: str) -> str:
    """Drop the end of a one-line completion that repeats the start of the rest of the line
    (the model writes ``x)`` where ``)`` already follows the cursor)."""
    rest = line_suffix.rstrip()
    for k in range(min(len(rest), len(text)), 0, -1):
        if text.endswith(rest[:k]):
            return text[:-k]
    return text


def _block_end_indent(lines: list[str], cursor: Cursor) -> int | None:
    """Lines indented less than this end the block being completed (indent languages)."""
    first = cursor.line_prefix + lines[0]
    if first.strip():
        if not cursor.line_prefix.strip() or len(lines) == 1:
            return _indent(first)
        # The cursor line was already code: the block is its continuation lines'.
        following = next((line for line in lines[1:] if line.strip()), None)
        return None if following is None else min(_indent(following), _indent(first) + 1)
    following = next((line for line in lines[1:] if line.strip()), None)
    return None if following is None else _indent(following)


def _bracket_cut(text: str, suffix_start: str) -> int | None:
    """Index where a brace-language completion closes the block it started in.

    Returns the cut index (exclusive), or None when the completion never leaves its block.
    Strings and line comments are skipped roughly; a closer the suffix already has is not
    repeated.
    """
    depth = 0
    quote: str | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote or ch == "\n":
                quote = None
        elif ch in "\"'`":
            quote = ch
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        elif ch in "([{":
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
            if depth < 0:
                # The completion closes the enclosing block: stop before the closer if the
                # suffix already holds it, else after it.
                line_start = text.rfind("\n", 0, i) + 1
                if suffix_start.lstrip().startswith(ch):
                    return line_start if not text[line_start:i].strip() else i
                return i + 1
        i += 1
    return None


def cut(raw: str, prefix: str, suffix: str, language: Language,
        cursor: Cursor | None = None) -> str:
    """The part of ``raw`` that completes the code at the cursor, right-stripped (``cursor``:
    ``Cursor.of(prefix, suffix)``, computed once per request by the caller)."""
    text = _cut_at_stops(raw, language).replace("\r\n", "\n")
    cursor = cursor or Cursor.of(prefix, suffix)
    if _single_line(cursor):
        text = text.split("\n", 1)[0]
        return _drop_line_overlap(text.rstrip(), cursor.line_suffix)

    lines = text.split("\n")
    keep = len(lines)
    base = _block_end_indent(lines, cursor) if language.blocks == "indent" else None
    seen_code = bool((cursor.line_prefix + lines[0]).strip())
    blank_before = False
    for number, line in enumerate(lines[1:], start=1):
        stripped = line.strip()
        if not stripped:
            blank_before = True
            continue
        if is_prose(line, language):
            keep = number
            break
        if cursor.next_line.strip() and stripped == cursor.next_line.strip() and seen_code:
            keep = number  # the model re-writes the line that already follows the cursor
            break
        if base is not None and _indent(line) < base:
            keep = number
            break
        if base == 0 and seen_code and blank_before and _indent(line) == 0:
            keep = number  # top level: one definition per completion
            break
        seen_code = True
        blank_before = False
    text = "\n".join(lines[:keep])

    if language.blocks == "braces":
        end = _bracket_cut(text, suffix)
        if end is not None:
            text = text[:end]
    if not suffix.strip() or "\n" in text:
        return text.rstrip()
    return _drop_line_overlap(text.rstrip(), cursor.line_suffix)


def should_stop(text: str, prefix: str, suffix: str, language: Language,
                cursor: Cursor | None = None) -> bool:
    """True once the completed lines of ``text`` already contain where ``cut`` would end it,
    so generating more tokens cannot change what is shown. It runs at every generated line:
    pass ``cursor`` (``Cursor.of(prefix, suffix)``) to compute that once per request."""
    done = text[: text.rfind("\n") + 1] if "\n" in text else ""
    if not done:
        return False
    cursor = cursor or Cursor.of(prefix, suffix)
    if _single_line(cursor):
        return True
    kept = cut(done, prefix, suffix, language, cursor)
    return len(kept) < len(done.rstrip())
