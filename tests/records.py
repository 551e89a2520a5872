"""Building store records by hand, for tests that fill a store without a model."""

from __future__ import annotations

from compilot.feedback.blame import Blame
from compilot.feedback.diagnostics import CheckResult, CheckStatus, Diagnostic, Stage


def verdict(stage: str, status: str, *, introduced: bool, tool: str = "test",
            diagnostics: tuple[Diagnostic, ...] = (), duration_ms: float = 1.0,
            blamed: str | None = None) -> Blame:
    """A check's blame as the monitor would record it; ``blamed`` defaults to the status when
    the completion introduced it."""
    result = CheckResult(Stage(stage), CheckStatus(status), tool, diagnostics, duration_ms)
    kind = CheckStatus(blamed) if blamed else result.status if introduced else None
    return Blame(result, introduced, diagnostics if introduced else (), kind)
