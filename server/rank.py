"""Compile-aware ranking: splice each candidate into the document, parse, order.

Candidates that introduce no new ERROR or MISSING node rank first, then by mean token
log-probability. A candidate that does not parse whole is shortened to its longest prefix of
whole lines that does (the model often finishes a block and starts a broken one). Candidates
that do not parse are kept (they are training signal: the store records them) but not shown
when another one parses; when none parses, only the most likely one is shown, marked as not
parsing (mid-statement, the user may be about to finish it).
"""

from __future__ import annotations

from dataclasses import replace

from compilot.feedback.records import Candidate
from compilot.feedback.syntax import Splicer, Trees, parser_for
from compilot.languages import Language

# Above this size the whole-document parse costs more than it tells: parse the window only.
MAX_FULL_PARSE_BYTES = 1 << 20


def _splicer(language: Language, before: str, after: str, trees: Trees | None = None,
             key: str | None = None) -> Splicer | None:
    parser = parser_for(language.grammar) if language.grammar else None
    if parser is None or language.grammar is None:
        return None
    head = before.encode("utf-8", errors="replace")
    source = head + after.encode("utf-8", errors="replace")
    tree = (trees.tree(key, parser, language.grammar, source)
            if trees is not None and key is not None else None)
    return Splicer(parser, source, len(head), language.grammar, tree)


def _longest_parsing_prefix(text: str, splicer: Splicer) -> str | None:
    lines = text.split("\n")
    for keep in range(len(lines) - 1, 0, -1):
        shorter = "\n".join(lines[:keep]).rstrip()
        if shorter.strip() and splicer.parses(shorter):
            return shorter
    return None


def rank(candidates: list[Candidate], *, before: str, after: str, language: Language,
         check_syntax: bool = True, trees: Trees | None = None,
         key: str | None = None) -> list[Candidate]:
    """Rank cut candidates for a cursor between ``before`` and ``after`` (the document, or
    the window of a huge one), setting ``parsed`` and ``shown``. Empty and duplicate texts
    go. ``trees``/``key``: the document's last tree, edited instead of parsed afresh."""
    splicer = _splicer(language, before, after, trees, key) if check_syntax else None
    ranked: list[Candidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        text = candidate.text
        parsed: bool | None = None
        if splicer is not None and text.strip():
            parsed = splicer.parses(text)
            if not parsed:
                shorter = _longest_parsing_prefix(text, splicer)
                if shorter is not None:
                    text, parsed = shorter, True
        if not text.strip() or text in seen:
            continue
        seen.add(text)
        ranked.append(replace(candidate, text=text, parsed=parsed, shown=True))
    ranked.sort(key=lambda r: (r.parsed is False, -(r.logprob if r.logprob is not None else -99)))
    if any(r.parsed for r in ranked):
        ranked = [r if r.parsed is not False else replace(r, shown=False) for r in ranked]
    elif ranked and all(r.parsed is False for r in ranked):
        ranked = ranked[:1] + [replace(r, shown=False) for r in ranked[1:]]
    return ranked
