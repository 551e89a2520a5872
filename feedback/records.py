"""What the store records of a completion: the request, its candidates, and what befell them.

A candidate is one type from the engine to the store: the engine makes it (``raw`` and
``text`` alike, the mean log-probability), the post-processor cuts its ``text``, the ranker
sets ``parsed`` and ``shown``, and the store writes it with the request (its rank is its
place in the request's list). Each answer's candidates get fresh ids (``identified``), also
when the answer came from the cache: an id names one offer to the user.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Source(StrEnum):
    """Where a request's candidates came from."""

    MODEL = "model"
    CACHE = "cache"
    """An identical window was answered before."""
    TYPED = "typed"
    """The user typed the start of the suggestion being shown: its remainder."""


class Origin(StrEnum):
    """Who made a request: an editor, or ``compilot bootstrap`` completing the user's own
    functions with their bodies hidden."""

    EDITOR = "editor"
    BOOTSTRAP = "bootstrap"


class EventKind(StrEnum):
    """What the user did with a candidate."""

    SHOWN = "shown"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PARTIAL = "partial"
    """A prefix taken (a word or a line)."""


class Trigger(StrEnum):
    """What made a followed completion be checked again."""

    ACCEPT = "accept"
    SAVE = "save"
    CLOSE = "close"
    DISK = "disk"
    """The file changed on disk outside the editor."""
    ANSWER = "answer"
    """A candidate checked in the document as it was when the request was answered."""


def new_id() -> str:
    """A fresh random id (32 hex digits)."""
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One candidate completion, from the engine to the store."""

    text: str
    """What is shown and inserted (after cutting and ranking)."""
    raw: str
    """The model's unprocessed text."""
    tokens: int
    logprob: float | None
    """Mean log-probability per token under the model (temperature 1); None if empty."""
    parsed: bool | None = None
    """True: splices into the document without new syntax problems; False: it does not;
    None: not checked."""
    shown: bool = True
    """False for a candidate that was generated but not offered (it did not parse)."""
    id: str = ""
    """The id that accept / reject events name; set when the candidate is offered."""


def identified(candidates: Sequence[Candidate]) -> list[Candidate]:
    """``candidates`` with fresh ids, for one answer."""
    return [replace(c, id=new_id()) for c in candidates]


@dataclass(frozen=True, kw_only=True)
class Request:
    """One completion request and the window the model saw."""

    uri: str
    language: str
    line: int
    character: int
    prefix: str
    suffix: str
    latency_ms: float
    model: str
    adapter: str
    source: Source
    origin: Origin = Origin.EDITOR
    context: tuple[dict[str, object], ...] = ()
    """The chunks of other files the prompt carried before the window (``path``, ``start``,
    ``text``), in prompt order."""
    window_of: str | None = None
    """The request whose window this answer shares (a cache hit): its window is not stored
    again (the store's ``request_windows`` view reads it from there)."""
    id: str = field(default_factory=new_id)
    created_at: float = field(default_factory=time.time)
