"""The prompt window around the cursor: bounded, line-anchored and sticky.

The window's start is kept across keystrokes while it still fits (an anchor per document), so
consecutive requests share a token prefix and the engine reuses its KV cache: a keystroke
evaluates only the new tokens. When the cursor runs past the budget the anchor moves forward
by a quarter of the budget at a line start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TRAILING_BLANK = re.compile(r"[ \t\r\n]+$")


@dataclass(frozen=True)
class Window:
    """The text the model sees, as offsets into the document and the text itself."""

    start: int
    end: int
    prefix: str
    suffix: str


def window(text: str, offset: int, *, prefix_chars: int, suffix_chars: int,
           anchor: int | None = None) -> Window:
    """The window around ``offset`` (a str index), reusing ``anchor`` when it still fits."""
    offset = max(0, min(offset, len(text)))
    if anchor is not None and 0 <= anchor <= offset and offset - anchor <= prefix_chars and (
        anchor == 0 or text[anchor - 1] == "\n"
    ):
        start = anchor
    elif offset <= prefix_chars:
        start = 0
    else:
        # Leave a quarter of the budget as slack so the anchor survives the next keystrokes.
        earliest = offset - (prefix_chars * 3) // 4
        newline = text.find("\n", earliest, offset)
        start = newline + 1 if newline >= 0 else earliest
    limit = min(len(text), offset + suffix_chars)
    end = limit
    if limit < len(text):
        newline = text.rfind("\n", offset, limit)
        end = newline + 1 if newline >= 0 else limit
    return Window(start, end, text[start:offset], text[offset:end])


def heal(prefix: str) -> tuple[str, str]:
    r"""Split trailing whitespace off the prompt: ``(prompt_prefix, held_back)``.

    Tokenizers merge a newline and indentation with the code that follows (``"\n   "`` +
    ``" if"``); a prompt ending in bare indentation forces a boundary the model never saw in
    training and derails small models (they start a new definition at column 0). The engine
    generates the held-back text as its first tokens (token healing) and ``unheal`` removes it.
    """
    held = _TRAILING_BLANK.search(prefix)
    if not held or held.start() == 0:
        return prefix, ""
    return prefix[: len(prefix) - len(held.group())], held.group()


def unheal(raw: str, held: str) -> str:
    """The model's text as seen from the real cursor, after ``heal`` held ``held`` back."""
    if not held:
        return raw
    if raw.startswith(held):
        return raw[len(held):]
    first, newline, rest = raw.partition("\n")
    # The model indented the first line differently: the user's indentation wins.
    return first.lstrip(" \t") + newline + rest
