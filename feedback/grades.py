"""The graded outcome of a candidate: one ordinal, from "does not parse" to "passes tests".

Pass / fail throws away most of what the checks say. A candidate that does not parse is worse
than one the compiler rejects for a type, which is worse than one that uses names nobody
defined, which is worse than one that compiles; one the user kept is better still, and one that
passes tests best. CodeRL grades its reward the same way (-1 compile error, -0.6 runtime
error, -0.3 failed test, +1 pass). The grade is read from what the store holds (the parse flag,
each check's status and what the candidate brought in, survival), so it needs no column of its
own, and every dataset exports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from compilot.feedback.diagnostics import COMPILING, CheckStatus, Stage


class Grade(IntEnum):
    """Worst to best; compare with < and >."""

    DOES_NOT_PARSE = 0
    TYPE_ERROR = 1
    UNRESOLVED = 2
    """It compiles, but with names the file does not define (a hallucinated helper)."""
    COMPILES = 3
    KEPT = 4
    """Compiles, accepted by the user, and still there (survival at or over the threshold)."""
    PASSES_TESTS = 5
    """Where a test exists (the evaluation's benchmarks): it compiles and passes them."""

    @property
    def label(self) -> str:
        """The lower-case name, as exports and reports print it."""
        return self.name.lower()


GRADE_NAMES = tuple(g.label for g in Grade)

Check = tuple[str, str, bool, str | None]
"""(stage, status, introduced, blamed) of one recorded check."""


def grade(parsed: bool | None, checks: Iterable[Check], *, kept: bool = False,
          passed: bool | None = None) -> Grade | None:
    """The grade of a candidate from its parse flag and checks; None when nothing conclusive
    was checked. ``kept``: accepted and survived; ``passed``: its tests (None: there are none).

    A check counts against the candidate only for what it brought in (``introduced`` for
    failures, ``blamed`` for unresolved names); stores written before ``blamed`` existed (its
    column is NULL there) fall back to the check's status.
    """
    checks = list(checks)
    blamed = {kind or status for _, status, introduced, kind in checks if introduced}
    if parsed is False or CheckStatus.SYNTAX in blamed:
        return Grade.DOES_NOT_PARSE
    if CheckStatus.TYPE in blamed:
        return Grade.TYPE_ERROR
    syntax_ok = parsed is True or any(stage == Stage.SYNTAX and status == CheckStatus.OK
                                      for stage, status, _, _ in checks)
    if not (syntax_ok and any(stage == Stage.COMPILE and status in COMPILING
                              for stage, status, _, _ in checks)):
        return None
    if any(kind == CheckStatus.UNRESOLVED for stage, _, _, kind in checks
           if stage == Stage.COMPILE):
        return Grade.UNRESOLVED
    if passed:
        return Grade.PASSES_TESTS
    return Grade.KEPT if kept else Grade.COMPILES
