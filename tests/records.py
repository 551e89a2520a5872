"""Building store records by hand, for tests that fill a store without a model."""

from __future__ import annotations

from compilot.feedback.blame import Blame
from compilot.feedback.diagnostics import CheckResult, CheckStatus, Diagnostic, Stage


def verdict(stage: str, status: str, *, introduced: bool, tool: str = "test",
            diagnostics: tuple[Diagnostic, ...] = (), duration_ms: float = 1.0) -> Blame:
    """A check's blame as the monitor would record it."""
    result = CheckResult(Stage(stage), CheckStatus(status), tool, diagnostics, duration_ms)
    return Blame(result, introduced, diagnostics if introduced else ())
