"""Checking a file, and blaming a completion only for what it introduced.

The file is checked with the completion and, when that fails, without it; the completion is
blamed only for failing diagnostics that the file without it lacks, compared by message as a
multiset (line numbers shift when text is inserted).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass

from compilot.feedback.compilers import check_compile
from compilot.feedback.diagnostics import (
    FAILING,
    KEPT,
    SHOWN,
    CheckResult,
    CheckStatus,
    Diagnostic,
    Stage,
    status_of,
)
from compilot.feedback.syntax import check_syntax
from compilot.languages import language_for
from compilot.settings import CheckSettings


@dataclass(frozen=True)
class Blame:
    """The check of the file with the completion, and what the completion is blamed for."""

    result: CheckResult
    introduced: bool
    """The completion brought in a failing diagnostic (syntax or type)."""
    new: tuple[Diagnostic, ...]
    blamed: CheckStatus | None = None
    """The worst kind among the diagnostics the completion brought in (syntax, type or
    unresolved: names it uses that the file does not define), None when it brought in none;
    what the graded outcome reads (``feedback.grades``)."""

    def diagnostics(self) -> list[dict[str, object]]:
        """What the store keeps of it: the new diagnostics, else the result's."""
        return [d.as_row() for d in (self.new or self.result.diagnostics)]


def check(source: str, language_id: str,
          settings: CheckSettings | None = None) -> list[CheckResult]:
    """Both stages, syntax then compile (both always run: the syntax check is cheap)."""
    return [check_syntax(source, language_id), check_compile(source, language_id, settings)]


def _run(stage: Stage, text: str, language_id: str,
         settings: CheckSettings | None) -> CheckResult:
    if stage is Stage.SYNTAX:
        return check_syntax(text, language_id, limit=KEPT)
    return check_compile(text, language_id, settings, limit=KEPT)


def _key(message: str) -> str:
    # Messages may cite a line ("... on line 12"), and lines shift when text is inserted.
    return re.sub(r"\bline \d+", "line N", message)


def _without_body(stage: Stage, before: str, after: str, language_id: str,
                  settings: CheckSettings | None) -> CheckResult | None:
    """The check of ``before`` with ``pass`` where ``after`` inserts the completion, when
    that parses: in Python a function whose body is missing does not parse at all, so that
    file tells nothing about the names the rest of it lacks."""
    at = len(os.path.commonprefix([before, after]))
    result = _run(stage, before[:at] + "pass" + before[at:], language_id, settings)
    return None if result.status is CheckStatus.SYNTAX else result


def blame(before: str, after: str, language_id: str, *, stage: Stage = Stage.COMPILE,
          settings: CheckSettings | None = None) -> Blame:
    """Check ``after`` (the file with the completion); blame the completion only for failing
    diagnostics that ``before`` (the file without it) lacks. With no baseline (``before``
    timed out, or the tool failed) nothing is blamed. Unresolved names are compared too (not
    failures, but they grade a completion below one that compiles cleanly), as a set: using
    a name the file already lacks brings in nothing new."""
    stage = Stage(stage)
    now = _run(stage, after, language_id, settings)
    if not (now.failed or now.status is CheckStatus.UNRESOLVED):
        return Blame(now.shown(), False, ())
    was = _run(stage, before, language_id, settings)
    if was.status is CheckStatus.SYNTAX and language_for(language_id).blocks == "indent":
        was = _without_body(stage, before, after, language_id, settings) or was
    if not was.status.conclusive:
        return Blame(now.shown(), False, ())
    left = Counter(_key(d.message) for d in was.diagnostics)
    lacking = {_key(d.message) for d in was.diagnostics if d.kind is CheckStatus.UNRESOLVED}
    new = []
    for d in now.diagnostics:
        if left[_key(d.message)] > 0:
            left[_key(d.message)] -= 1
        elif not (d.kind is CheckStatus.UNRESOLVED and _key(d.message) in lacking):
            new.append(d)
    blamed = status_of(new) if new else None
    return Blame(now.shown(), any(d.kind in FAILING for d in new), tuple(new[:SHOWN]),
                 None if blamed is CheckStatus.OK else blamed)
