"""The robustness set: held-out functions asked for the way other clients ask, not the server.

The server heals every prompt (``server.prompt.heal``: trailing whitespace is held back and
regenerated), so an adapter trained only on healed prompts is only ever tested on them. A
plain llama.cpp call or another editor plugin sends the text as it is. One demo adapter
answered "```" to most prompts that ended in the newline after a docstring, where the base
wrote a body. Each held-out function here gives one prompt per shape:

- ``newline``: the signature (and docstring) up to the newline that ends them;
- ``indented``: that newline plus the body's indentation (where the body's first token
  goes);
- ``mid_line``: partway into the body's first line (typing in the middle of a statement);
- ``fim``: the ``indented`` prefix plus the rest of the file as suffix, for models with
  fill-in-the-middle tokens.

The first three send no suffix, as a plain completion call does. Each prompt goes to the model
as it is, no healing and no post-processing (``Evaluator.robustness``); the completion is
then checked in the whole file (``check_suffix``: everything after the hidden body), so a
name defined further down is not unresolved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compilot.feedback import datasets as fd
from compilot.settings import Settings
from compilot.training.bodies import LANGUAGES, bodies
from compilot.training.corpus import Hole
from compilot.training.prompts import Prompt

if TYPE_CHECKING:
    from compilot.feedback.store import Store

SHAPES = ("newline", "indented", "mid_line", "fim")
_BREAKS = " (=.,[:"
"""Characters after which ``mid_line`` may cut the first body line (a word boundary)."""


@dataclass(frozen=True)
class Item:
    """One prompt of the set: what the model is sent, and the file around it for the check."""

    shape: str
    function: str
    prompt: Prompt
    """The prefix and suffix the model is sent (the suffix only for ``fim``)."""
    check_suffix: str
    """The file after the hidden body: what the completion must fit in front of."""

    @property
    def check(self) -> Prompt:
        """The cursor as the compile check sees it: the prompt's prefix, the file's rest."""
        return Prompt(self.prompt.prefix, self.check_suffix, self.prompt.language)


def mid_line(line: str) -> int:
    """Where ``mid_line`` cuts ``line`` (a body line, indentation included): after the word
    boundary nearest its middle, else its middle; always inside the code, never 0."""
    indent = len(line) - len(line.lstrip(" \t"))
    code = len(line) - indent
    middle = indent + code // 2
    breaks = [i + 1 for i in range(indent, len(line) - 1) if line[i] in _BREAKS]
    return min(breaks, key=lambda i: abs(i - middle)) if breaks else max(indent + 1, middle)


def shapes(hole: Hole, language: str, *, fim: bool) -> list[Item]:
    """The prompts of one function (a ``bodies`` hole: the prefix ends in the body's
    indentation, the reference is the body, the suffix the rest of the file)."""
    newline = hole.prefix.rstrip(" \t")
    if not newline.endswith("\n") or not hole.reference.strip():
        return []
    items = [Item("newline", hole.name, Prompt(newline, "", language), hole.suffix),
             Item("indented", hole.name, Prompt(hole.prefix, "", language), hole.suffix)]
    first = hole.prefix[len(newline):] + hole.reference.split("\n", 1)[0]
    if len(first.strip()) >= 4:
        at = mid_line(first) - len(hole.prefix[len(newline):])
        items.append(Item("mid_line", hole.name,
                          Prompt(hole.prefix + hole.reference[:at], "", language),
                          hole.suffix))
    if fim:
        items.append(Item("fim", hole.name, Prompt(hole.prefix, hole.suffix, language),
                          hole.suffix))
    return items


def from_holes(holes: Iterable[tuple[Hole, str]], *, fim: bool, limit: int) -> list[Item]:
    """The set from (hole, language) pairs: the shapes of the first ``limit`` functions."""
    out: list[Item] = []
    for count, (hole, language) in enumerate(holes):
        if count >= limit:
            break
        out += shapes(hole, language, fim=fim)
    return out


def from_documents(documents: Iterable[tuple[str, str]], *, fim: bool, limit: int,
                   min_lines: int = 2, max_lines: int = 12) -> list[Item]:
    """The set from held-out (text, language) pairs, windows of files as the store holds
    them: the error-free functions whose bodies lie whole inside, each once, at most
    ``limit`` of them."""
    seen: set[str] = set()
    found: list[tuple[Hole, str]] = []
    for text, language in documents:
        if language not in LANGUAGES:
            continue
        for hole in bodies(text, language, "window", min_lines=min_lines,
                           max_lines=max_lines, partial=True) or []:
            key = hole.prefix[-200:] + hole.reference
            if key not in seen:
                seen.add(key)
                found.append((hole, language))
    return from_holes(found, fim=fim, limit=limit)


def by_shape(items: Iterable[Item]) -> dict[str, list[Item]]:
    """The items grouped by shape, in SHAPES order."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.shape, []).append(item)
    return {shape: groups[shape] for shape in SHAPES if shape in groups}


def held_out_documents(rows: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(text, language) of held-out rows with a good completion in place: a desirable KTO
    completion, a DPO row's chosen side, an SFT row (a revision or a kept completion)."""
    out = []
    for row in rows:
        text = row.get("chosen") if "chosen" in row else row.get("completion")
        if text is None or row.get("label", True) is False:
            continue
        out.append((row["prompt"] + text + (row.get("suffix") or ""),
                    row.get("language") or "python"))
    return out


def robustness_set(rows: Iterable[dict[str, Any]], settings: Settings) -> list[Item]:
    """The gate's robustness set from held-out rows (``training.robustness``)."""
    return from_documents(held_out_documents(rows), fim=True,
                          limit=settings.gate.robustness_functions)


def robustness_of_store(store: Store, settings: Settings, limit: int) -> list[Item]:
    """The robustness set of the store's test split (files never trained on)."""
    rows: list[dict[str, Any]] = []
    for kind in ("kto", "sft"):
        rows += list(fd.build(store, fd.Selection(kind=kind), settings.datasets)["test"])
    return from_documents(held_out_documents(rows), fim=True, limit=limit)
