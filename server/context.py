"""Other files in the prompt: a ring of chunks from the files the user opened, edited or saved.

A small model that cannot see a helper's name invents one. Every anchor adds other files:
llama.vim keeps a ring buffer of chunks and sends them with each request, Copilot picks from
the neighbouring tabs the snippet most like the code at the cursor (Jaccard similarity over
identifiers). compilot does both:

- **The ring.** Each file the user opens or saves is cut into chunks (a top-level definition
  and what follows, up to ``chunk_lines`` lines) and put at the ring's newest end, replacing
  that file's older chunks; the oldest chunks leave when the ring is full. A file that
  ``excluded`` names (``.compilotignore``, ``logging.ignore``) never enters it, and a chunk's
  text is redacted before it is kept, so a secret in another open file reaches neither a
  prompt nor the store.
- **The choice.** For a request, first the chunks of other files that define a name the
  window uses, or the document's import lines bring in, and the window does not define
  itself (an imported helper, a class it instantiates: what
  Zeta's definitions and the IDE plugins' "go to definition" context give), the more such names
  the better; then the chunks most like the window (Jaccard over identifiers); all within a
  token budget. A chunk more like the window than ``max_similarity`` is left out (llama.vim
  evicts those: they make the model repeat code), and so is one with nothing in common with
  it.
- **Threads.** Files are cut on a thread of the server's (a big file's chunks and their
  redaction would hold the editor's loop), the choice is made on the loop: one lock.
- **Stability.** Anything that changes in a prompt re-evaluates everything after it, so the
  choice for a document is kept while the ring has not changed and the window stays where it
  was (``anchor``): keystrokes reuse the KV cache. The chosen chunks are laid out in the order
  they entered the ring (the newest, the likeliest to change, last), not by score.

A model with repository tokens gets the chunks as files (``Engine.prompt(context=)``); any
other model as comments before the window (``as_comments``), as Copilot's "Compare this
snippet from" lines.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count

from compilot.feedback.redact import redact
from compilot.server.layout import comments

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]+")
KEYWORDS = frozenset("""
    and as assert async await break case catch class const continue def default del do elif
    else enum except export extends false final finally fn for from func function go if impl
    import in interface is let match mod mut new nil none not null or package pass pub public
    raise return self static struct super switch this throw true try type typeof use var void
    while with yield int char bool float double long unsigned string str list dict
""".split())
"""Words every file of a language shares: counted, they would make any two files alike."""
DEFINITION = re.compile(
    r"^[ \t]*(?:export\s+)?(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?"
    r"(?:def|class|function\*?|fn|func|struct|enum|interface|trait|type|const|let|var)"
    r"\s+([A-Za-z_][A-Za-z0-9_]*)"
    r"|^([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?::[^=\n]*)?=(?!=)", re.MULTILINE)
"""A definition's name, in the languages' common spellings: ``def``/``class``/``function``/
``fn``/``func``/``struct``... at any indentation (methods too), or an assignment at column 0
(a module's constants); a definition spelled otherwise (C's ``int f(``) counts by similarity
only."""
_ids = count(1)


def identifiers(text: str) -> frozenset[str]:
    """The identifiers of ``text`` of two characters or more, keywords left out."""
    return frozenset(w for w in IDENTIFIER.findall(text) if w.lower() not in KEYWORDS)


def definitions(text: str) -> frozenset[str]:
    """The names ``text`` defines (``DEFINITION``), of two characters or more."""
    return frozenset(name for m in DEFINITION.finditer(text) for name in m.groups()
                     if name and len(name) > 1)


IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+\S+[ \t]+import[ \t]*\(([^)]*)\)"
    r"|(?:from[ \t]+\S+[ \t]+import|import|use|require|#[ \t]*include)\b([^\n]*))",
    re.MULTILINE)
"""An import line (Python's ``from m import (a, b)`` over several lines too; JavaScript's and
TypeScript's ``import``, Rust's ``use``, C's ``#include``): what it brings in by name."""


def imported(text: str) -> frozenset[str]:
    """The names ``text``'s import lines bring in (the words after ``import``, ``use`` or
    ``#include``: the module's own for ``import m``)."""
    return frozenset(name for m in IMPORT.finditer(text) for group in m.groups() if group
                     for name in identifiers(group))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|; 0 for two empty sets."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass(frozen=True)
class Chunk:
    """Lines ``start`` (0-based) onwards of a file, redacted."""

    uri: str
    path: str
    """How the prompt names the file (relative to the workspace where known)."""
    start: int
    text: str
    names: frozenset[str] = field(repr=False, compare=False)
    defines: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    """What the chunk defines (``definitions``)."""
    serial: int = field(default_factory=lambda: next(_ids), compare=False)
    """The order chunks entered the ring (a chunk re-cut from a saved file is new)."""


def chunks_of(text: str, *, chunk_lines: int) -> list[tuple[int, str]]:
    """``text`` cut into (first line, text) pieces of at most ``chunk_lines`` lines, each
    starting where a line starts at column 0 after a blank line or at a cut, so that a piece
    is a top-level definition (with its decorators and comments) or part of one, and small
    neighbouring definitions share a piece."""
    lines = text.split("\n")
    starts = [0] + [i for i in range(1, len(lines))
                    if lines[i][:1] not in ("", " ", "\t", ")", "]", "}")
                    and not lines[i - 1].strip()]
    blocks: list[tuple[int, int]] = []  # [start, end) of top-level blocks
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(lines)
        for cut in range(start, end, chunk_lines):
            blocks.append((cut, min(end, cut + chunk_lines)))
    pieces: list[tuple[int, int]] = []
    for start, end in blocks:
        if pieces and end - pieces[-1][0] <= chunk_lines:
            pieces[-1] = (pieces[-1][0], end)
        else:
            pieces.append((start, end))
    out = []
    for start, end in pieces:
        body = "\n".join(lines[start:end]).strip("\n")
        if body.strip():
            out.append((start, body))
    return out


@dataclass(frozen=True)
class Choice:
    """The chunks a request's prompt carries, in the order they entered the ring."""

    chunks: tuple[Chunk, ...] = ()

    @property
    def key(self) -> tuple[int, ...]:
        """What tells two choices apart (for the answer cache)."""
        return tuple(c.serial for c in self.chunks)

    def files(self) -> list[tuple[str, str]]:
        """(path, text) per chunk, for ``Engine.prompt(context=)`` (the most relevant last:
        here the newest, which the ring order puts last)."""
        return [(c.path, c.text) for c in self.chunks]

    def as_comments(self, comment: str) -> str:
        """The chunks as line comments before the window, each under the file it came from."""
        return comments(self.files(), comment)

    def as_records(self) -> list[dict[str, object]]:
        """What the store keeps of the choice (the prompt the model saw)."""
        return [{"path": c.path, "start": c.start, "text": c.text} for c in self.chunks]


NONE = Choice()
"""No other files."""


class ContextRing:
    """The chunks of the files the user worked in recently, and the choice per document."""

    def __init__(self, *, max_chunks: int = 64, chunk_lines: int = 24,
                 max_similarity: float = 0.5,
                 excluded: Callable[[str], bool] = lambda uri: False) -> None:
        self.max_chunks = max_chunks
        self.chunk_lines = chunk_lines
        self.max_similarity = max_similarity
        self.excluded = excluded
        self._chunks: list[Chunk] = []  # oldest first
        self._chosen: dict[str, tuple[tuple[object, ...], Choice]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def chunks(self) -> Sequence[Chunk]:
        """The ring, oldest first."""
        with self._lock:
            return tuple(self._chunks)

    def add_file(self, uri: str, path: str, text: str) -> None:
        """(Re)cut a file into the ring's newest end: on open, on save, when the user leaves
        a document they edited. Its older chunks go; so does an excluded file's text."""
        new = []
        if not self.excluded(uri) and self.max_chunks > 0:
            # a file with more chunks than the ring holds keeps its first ones (its imports
            # and the definitions the rest builds on)
            for start, body in chunks_of(text, chunk_lines=self.chunk_lines)[:self.max_chunks]:
                clean = redact(body)
                new.append(Chunk(uri, path, start, clean, identifiers(clean),
                                 definitions(clean)))
        with self._lock:
            kept = [c for c in self._chunks if c.uri != uri] + new
            self._chunks = kept[-self.max_chunks:] if self.max_chunks > 0 else []

    def forget(self, uri: str) -> None:
        """Drop a file's chunks (it was deleted, or became ignored) and its choice."""
        with self._lock:
            self._chunks = [c for c in self._chunks if c.uri != uri]
            self._chosen.pop(uri, None)

    def choose(self, uri: str, window: str, *, anchor: int, budget: int,
               measure: Callable[[str], int], document: str = "") -> Choice:
        """The chunks for a request in ``uri`` whose window text is ``window`` starting at
        ``anchor``: the same as last time while the other files' chunks and the anchor are
        unchanged (saving this document changes neither), else those that fit ``budget``
        (``measure``: a text's tokens), first the ones defining what the window uses or the
        ``document``'s import lines bring in (often above the window), then the most like the
        window."""
        with self._lock:
            others = [c for c in self._chunks if c.uri != uri]
            key = (anchor, budget, *(c.serial for c in others))
            kept = self._chosen.get(uri)
        if kept is not None and kept[0] == key:
            return kept[1]
        here = identifiers(window)
        wanted = (here | imported(document)) - definitions(window)  # defined elsewhere
        scored = []
        for c in others:
            similarity = jaccard(here, c.names)
            if 0.0 < similarity <= self.max_similarity:
                scored.append((len(c.defines & wanted), similarity, c.serial, c))
        picked: list[Chunk] = []
        room = budget
        for *_, c in sorted(scored, key=lambda s: (-s[0], -s[1], -s[2])):
            cost = measure(c.text) + measure(c.path) + 8  # the path line, separators
            if cost <= room:
                picked.append(c)
                room -= cost
        choice = Choice(tuple(sorted(picked, key=lambda c: c.serial)))
        with self._lock:
            self._chosen[uri] = (key, choice)
        return choice
