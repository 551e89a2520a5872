"""The cursor an evaluation completes (held-out prompts, the robustness set, the gate)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """A cursor from the user's code: the window before and after it."""

    prefix: str
    suffix: str
    language: str
