"""What a check reports: its diagnostics, each of a kind, and the status they give the check."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

SHOWN = 10
"""Diagnostics a result carries."""
KEPT = 200
"""Diagnostics kept while checking: blame compares more than the shown ones."""
MESSAGE_CHARS = 2000
"""Characters kept of a diagnostic's message: a tool may print a line of any length, and each
message is stored (issue 12: one 300 MB line made a 300 MB events.db)."""
_CUT = " ... [cut]"


class Stage(StrEnum):
    """Which check: tree-sitter's parse, or the language's compiler."""

    SYNTAX = "syntax"
    COMPILE = "compile"


class CheckStatus(StrEnum):
    """The verdict of one check, worst kind first among the failures."""

    OK = "ok"
    SYNTAX = "syntax"
    """The code does not parse."""
    TYPE = "type"
    """It parses, and the compiler rejects it (types, arity, declarations)."""
    UNRESOLVED = "unresolved"
    """Names or imports the check cannot see (a window of a file, a missing package): not a
    failure of the code (the thesis ignores import errors too, ch. 3.1.3)."""
    TIMEOUT = "timeout"
    TOOLCHAIN_MISSING = "toolchain_missing"
    """No grammar or compiler for the language here: nothing was checked."""
    ERROR = "error"
    """The tool failed without saying anything readable about the code."""

    @property
    def failed(self) -> bool:
        """A failure of the code; unresolved names, timeouts and missing tools are not."""
        return self in FAILING

    @property
    def conclusive(self) -> bool:
        """The check ran to a verdict on the code (no timeout, tool error or missing tool)."""
        return self not in (CheckStatus.TIMEOUT, CheckStatus.ERROR,
                            CheckStatus.TOOLCHAIN_MISSING)


FAILING = frozenset({CheckStatus.SYNTAX, CheckStatus.TYPE})
COMPILING = frozenset({CheckStatus.OK, CheckStatus.UNRESOLVED, CheckStatus.TOOLCHAIN_MISSING})
"""Compile-stage statuses that let a candidate count as compiling (feedback.datasets)."""
_BY_SEVERITY = (CheckStatus.SYNTAX, CheckStatus.TYPE, CheckStatus.UNRESOLVED)


@dataclass(frozen=True)
class Diagnostic:
    """One error, 0-based; ``kind`` is the status it alone would give (syntax/type/unresolved)."""

    line: int
    column: int
    message: str
    kind: CheckStatus = CheckStatus.ERROR

    def __post_init__(self) -> None:
        if len(self.message) > MESSAGE_CHARS:  # frozen: set as the generated __init__ does
            object.__setattr__(self, "message", self.message[:MESSAGE_CHARS - len(_CUT)] + _CUT)

    def as_row(self) -> dict[str, object]:
        """The form the store and the CLI keep."""
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    """One stage's verdict on one text."""

    stage: Stage
    status: CheckStatus
    tool: str
    diagnostics: tuple[Diagnostic, ...]
    duration_ms: float

    @property
    def failed(self) -> bool:
        """A failure of the code; unresolved imports, timeouts and missing tools are not."""
        return self.status.failed

    def shown(self) -> CheckResult:
        """The result with at most SHOWN diagnostics."""
        return replace(self, diagnostics=self.diagnostics[:SHOWN])


def status_of(diagnostics: Sequence[Diagnostic]) -> CheckStatus:
    """The worst kind among ``diagnostics`` (ok when there is none)."""
    kinds = {d.kind for d in diagnostics}
    return next((k for k in _BY_SEVERITY if k in kinds), CheckStatus.OK)


def since_ms(started: float) -> float:
    """Milliseconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - started) * 1000


def encode(source: str) -> bytes:
    """UTF-8; bytes a reader kept as surrogates (surrogateescape) go back as they were."""
    try:
        return source.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return source.encode("utf-8", "replace")
