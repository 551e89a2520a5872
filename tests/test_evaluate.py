"""The evaluator's compile check of a completion spliced into a stored window."""

from __future__ import annotations

import pytest

from compilot.models import embedded_model_path
from compilot.settings import Settings
from compilot.training.evaluate import Evaluator, Prompt

# A window cut from a file: it starts inside a method, so the compiler already fails on its
# first line ("unexpected indent") and would report nothing about the completion.
WINDOW = Prompt("        x = 1\n        return x\n\n    def g(self):\n        ",
                "\n\n    def h(self):\n        pass\n", "python")


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    ev = Evaluator(embedded_model_path(), Settings(), max_tokens=8)
    yield ev
    ev.close()


@pytest.mark.parametrize("text, ok", [
    pytest.param("return self.x + 1", True, id="fine"),
    pytest.param("return (self.x +", False, id="unclosed"),
    pytest.param("strugg?]( veterin ered< E:||", False, id="garbage"),
    pytest.param("return undefined_name", True, id="unresolved-name-is-not-an-error"),
])
def test_splices_sees_errors_in_a_window_that_does_not_compile(evaluator: Evaluator,
                                                               text: str, ok: bool) -> None:
    assert evaluator.splices(WINDOW, text) is ok
