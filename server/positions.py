"""LSP positions (line, UTF-16 column) to str offsets, and the word before the cursor."""

from __future__ import annotations


def offset_at(text: str, line: int, character: int) -> int | None:
    """The str index of an LSP position, or None when the line does not exist.

    Columns count UTF-16 code units (LSP's default encoding); a column past the end of its
    line means the end of the line, as the LSP specification says.
    """
    if line < 0 or character < 0:
        return None
    start = 0
    for _ in range(line):
        newline = text.find("\n", start)
        if newline < 0:
            return None
        start = newline + 1
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    if end > start and text[end - 1] == "\r":
        end -= 1
    units = 0
    index = start
    while index < end and units < character:
        units += 2 if ord(text[index]) > 0xFFFF else 1
        index += 1
    return index


def word_before(text: str, offset: int) -> str:
    """The identifier characters that end at ``offset``."""
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return text[start:offset]


def position_of(text: str, offset: int) -> tuple[int, int]:
    """The LSP position (line, UTF-16 column) of the str index ``offset`` in ``text``."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return line, sum(2 if ord(ch) > 0xFFFF else 1 for ch in text[start:offset])


def selected_applied(text: str, offset: int, start: int, end: int, selected: str
                     ) -> tuple[str, int] | None:
    """The document as it would be with the suggest widget's selected entry accepted (its
    ``selected`` text over ``start``..``end``), and the cursor after it; None when the cursor at
    ``offset`` is not inside that range (an entry elsewhere cannot be extended at the cursor)."""
    if not 0 <= start <= offset <= end <= len(text):
        return None
    return text[:start] + selected + text[end:], start + len(selected)
