"""Follow an accepted completion's text through later edits; measure how much survives.

A tracked region is a [start, end) range of str offsets in a document mirror. Edits before it
shift it; edits that touch it grow it to cover what the user wrote there (so that the region's
final text is the user's revision of the completion); typing right after it stays outside.
Text added right after a completion that broke the code counts as part of it: that is the user
finishing it, and the region's text is then the revision. Survival is the share of the
accepted text still present in the region (as Copilot measures retention), from difflib's
matching blocks.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

# Checkpoints after acceptance, in seconds (Copilot reports retention at similar delays).
CHECKPOINTS = (("30s", 30.0), ("2m", 120.0), ("10m", 600.0))


@dataclass
class Region:
    """An accepted completion being followed."""

    candidate_id: str
    uri: str
    language: str
    start: int
    end: int
    original: str
    accepted_at: float
    broken: str | None = None
    """The failing status ('syntax' / 'type') of the completion as accepted, if it failed."""
    revised: bool = False
    done: set[str] = field(default_factory=set)

    def text(self, document: str) -> str:
        """The region's current text in ``document``."""
        return document[self.start : self.end]

    def without(self, document: str) -> str:
        """The document with the region removed (what it was before the completion)."""
        return document[: self.start] + document[self.end :]


def apply_edit(region: Region, start: int, end: int, new_len: int) -> None:
    """Move ``region`` for an edit that replaced [start, end) by ``new_len`` characters."""
    delta = new_len - (end - start)
    if end <= region.start:
        region.start += delta  # before the region, insertions at its start included
        region.end += delta
    elif start > region.end or (start == region.end and not region.broken):
        return  # after it: typing right after a completion that works stays outside
    elif start == region.end:
        region.end += delta  # right after a broken one: the user is finishing it
    else:
        region.start = min(region.start, start)
        region.end = max(region.end, end) + delta


def survival(original: str, current: str) -> float:
    """Share of ``original`` still present in ``current`` (0..1)."""
    if not original:
        return 1.0
    matcher = difflib.SequenceMatcher(None, original, current, autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks())
    return kept / len(original)


def remap(region: Region, old: str, new: str) -> bool:
    """Move ``region`` from ``old`` to ``new`` (a change seen on disk, not as edits).

    Returns False when the region's text cannot be found any more.
    """
    opcodes = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()

    def map_offset(offset: int, *, right: bool) -> int:
        if right and region.broken:
            for tag, i1, _i2, _j1, j2 in opcodes:
                if tag == "insert" and i1 == offset:
                    return j2  # text added right after a broken completion finishes it
        for tag, i1, i2, j1, j2 in opcodes:
            if i1 <= offset < i2 or (offset == i2 and tag == "equal" and right):
                if tag == "equal":
                    return j1 + (offset - i1)
                return j2 if right else j1
        return len(new)

    start = map_offset(region.start, right=False)
    end = map_offset(region.end, right=True) if region.end > region.start else start
    if end < start:
        return False
    region.start, region.end = start, end
    return True


def find_inserted(document: str, text: str, near: int) -> int | None:
    """Where ``text`` was inserted: at ``near`` if it is there, else its closest occurrence."""
    if document.startswith(text, near):
        return near
    best: int | None = None
    index = document.find(text)
    while index >= 0:
        if best is None or abs(index - near) < abs(best - near):
            best = index
        index = document.find(text, index + 1)
    return best
