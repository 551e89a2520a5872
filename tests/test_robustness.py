"""The robustness set: held-out functions asked for as a plain client asks (the prompt ending in
the newline after the docstring, in the body's indentation, mid-line, with a suffix for FIM
models), scored on the real model, and the gate that refuses an adapter losing on a shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compilot.models import embedded_model_path
from compilot.server.prompt import heal
from compilot.settings import Settings
from compilot.training.bodies import bodies
from compilot.training.corpus import stdlib_holes
from compilot.training.evaluate import Evaluation, Evaluator
from compilot.training.robustness import (
    SHAPES,
    by_shape,
    from_documents,
    from_holes,
    held_out_documents,
    mid_line,
    shapes,
)
from compilot.training.rounds import judge

SOURCE = '''import os


def area(width, height):
    """The area of a rectangle."""
    total = width * height
    return total


def other():
    return area(1, 2) + len(os.sep)
'''

C_SOURCE = """#include <stdio.h>

static int twice(int x)
{
    int y = x * 2;
    return y;
}
"""


def test_each_shape_is_cut_from_the_function_where_it_says() -> None:
    hole = next(h for h in bodies(SOURCE, "python", "f.py") or [] if h.name == "area")
    items = {item.shape: item for item in shapes(hole, "python", fim=True)}
    assert list(items) == list(SHAPES)
    newline, indented, mid, fim = (items[s].prompt for s in SHAPES)
    assert newline.prefix.endswith('"""The area of a rectangle."""\n') and newline.suffix == ""
    assert indented.prefix.endswith('rectangle."""\n    ') and indented.suffix == ""
    # mid-line: inside the first body line, after a word boundary, with code on both sides
    first = "    total = width * height"
    assert mid.suffix == "" and mid.prefix.startswith(hole.prefix)
    typed = mid.prefix[len(hole.prefix) - 4:]
    assert first.startswith(typed) and "total" in typed and len(typed) < len(first)
    assert fim.prefix == hole.prefix and fim.suffix == hole.suffix
    for item in items.values():
        # The check sees the whole file around the hidden body: what is after it, unchanged.
        assert item.check_suffix == hole.suffix
        assert item.check.prefix == item.prompt.prefix
        assert SOURCE.startswith(item.prompt.prefix) and SOURCE.endswith(item.check_suffix)
    assert "fim" not in {i.shape for i in shapes(hole, "python", fim=False)}


def test_shapes_of_a_brace_language() -> None:
    [hole] = bodies(C_SOURCE, "c", "f.c") or []
    items = by_shape(shapes(hole, "c", fim=False))
    assert list(items) == ["newline", "indented", "mid_line"]
    assert items["newline"][0].prompt.prefix.endswith("{\n")
    assert items["indented"][0].prompt.prefix.endswith("{\n    ")


@pytest.mark.parametrize(("line", "cut"), [
    ("    return self._x + 1", "    return "),
    ("    total = width * height", "    total = "),
    ("    x = compute(alpha, beta)", "    x = compute("),
    ("    pass", "    pa"),
])
def test_mid_line_cuts_at_the_word_boundary_nearest_the_middle(line: str, cut: str) -> None:
    assert line[:mid_line(line)] == cut


def test_the_set_from_stored_windows() -> None:
    # A stored window starts and ends inside blocks: its whole functions still count, once.
    window = "        return self.x\n\n" + SOURCE + "\n\ndef cut_off(a):\n    if a:\n"
    items = from_documents([(window, "python"), (window, "python"), ("x = 1", "text")],
                           fim=False, limit=10)
    assert {i.function for i in items} == {"area"}  # other() is one line: under min_lines
    assert len(by_shape(items)["newline"]) == 1
    limited = from_documents([(SOURCE, "python")], fim=False, limit=0)
    assert limited == []


def test_the_held_out_documents_are_the_good_completions_in_place() -> None:
    rows = [{"prompt": "def f(a):\n    ", "completion": "return a\n", "label": True,
             "suffix": "\n", "language": "python"},
            {"prompt": "def g(a):\n    ", "completion": "return b\n", "label": False},
            {"prompt": "def h(a):\n    ", "chosen": "return a", "rejected": "x"}]
    assert held_out_documents(rows) == [("def f(a):\n    return a\n\n", "python"),
                                             ("def h(a):\n    return a", "python")]


def _eval(held: float, robust: dict[str, float]) -> Evaluation:
    return Evaluation("x", {"compile@1": held}, {},
                      robustness={s: {"prompts": 20, "compile@1": v} for s, v in robust.items()})


@pytest.mark.parametrize(("candidate", "base", "promoted", "why"), [
    pytest.param({"newline": 0.50, "indented": 0.60}, None, True, "robustness newline 0.50",
                 id="held"),
    pytest.param({"newline": 0.40, "indented": 0.60}, None, False,
                 "robustness compile@1 (newline prompts) fell 0.500 -> 0.400", id="newline-lost"),
    pytest.param({"newline": 0.45, "indented": 0.56}, None, True, "robustness",
                 id="within-tolerance"),
    pytest.param({"newline": 0.50, "indented": 0.60}, {"newline": 0.70, "indented": 0.60},
                 False, "fell 0.700 -> 0.500 against the base", id="against-the-base"),
])
def test_the_gate_refuses_an_adapter_that_loses_a_shape(candidate: dict[str, float],
                                                        base: dict[str, float] | None,
                                                        promoted: bool, why: str) -> None:
    # The candidate passes the held-out set (0.5 -> 0.8) in every case.
    serving = _eval(0.5, {"newline": 0.50, "indented": 0.60})
    ok, reason = judge(serving, _eval(0.8, candidate), Settings().gate,
                       None if base is None else _eval(0.5, base))
    assert ok is promoted, reason
    assert why in reason and "0.500 -> 0.800" in reason


def test_the_evaluator_sends_the_shapes_as_they_are() -> None:
    holes = [(h, "python") for h in stdlib_holes(3, seed=4)]
    items = from_holes(holes, fim=True, limit=3)
    settings = Settings()
    evaluator = Evaluator(embedded_model_path(), settings, max_tokens=24)
    try:
        figures = evaluator.robustness(items)
        # No healing: the model is sent the prompt's own trailing indentation.
        indented = next(i for i in items if i.shape == "indented").prompt
        evaluator.plain(indented)
        sent = evaluator.engine.counters.last_prompt
        assert sent == evaluator.engine.prompt(indented.prefix, "", 24)
        assert sent != evaluator.engine.prompt(heal(indented.prefix)[0], "", 24)
        fim = evaluator.engine.fim is not None
    finally:
        evaluator.close()
    expected = [s for s in SHAPES if fim or s != "fim"]
    assert list(figures) == expected
    for shape in expected:
        values = figures[shape]
        assert values["prompts"] == 3
        assert 0.0 <= values["compile@1"] <= 1.0 and 0.0 <= values["cut compile@1"] <= 1.0


def test_eval_robustness_on_the_collected_store(collected: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(collected / "events.db", root / "events.db")
    (root / "c.toml").write_text("[datasets]\nheld_out = 0.5\n")
    env = {**os.environ, "COMPILOT_DATA_DIR": str(root), "COMPILOT_CONFIG": str(root / "c.toml")}
    done = subprocess.run([sys.executable, "-m", "compilot", "eval", "--benchmark",
                           "robustness", "--limit", "2", "--max-tokens", "24", "--json"],
                          env=env, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["benchmark"] == "robustness" and result["adapter"] == "base"
    assert {"newline", "indented"} <= set(result["modes"])
    for values in result["modes"].values():
        assert 1 <= values["prompts"] <= 2 and 0.0 <= values["compile@1"] <= 1.0
