"""Cutting raw model text where the code being completed ends."""

from __future__ import annotations

import pytest

from compilot.languages import language_for
from compilot.server.postprocess import Cursor, cut, is_prose, should_stop

PY = language_for("python")
C = language_for("c")
JAVA = language_for("java")

BODY = 'def f(a, b):\n    """Doc."""\n    '


@pytest.mark.parametrize(
    ("raw", "prefix", "suffix", "language", "expected"),
    [
        pytest.param("return a + b\n```\n\nThis function adds.", BODY, "\n", PY,
                     "return a + b", id="closing-fence"),
        pytest.param("return a + b\n\nThis function returns the sum of both numbers.",
                     BODY, "\n", PY, "return a + b", id="prose-after-code"),
        pytest.param("return a + b\n\n# Example usage:\nprint(f(1, 2))", BODY, "\n", PY,
                     "return a + b", id="dedent-ends-body"),
        pytest.param("if a:\n        return b\n    return a\ndef g():\n    pass", BODY, "\n",
                     PY, "if a:\n        return b\n    return a", id="nested-block-kept"),
        pytest.param("a + b)\nprint(1)", "x = max(", ")\n", PY, "a + b",
                     id="single-line-drops-overlap"),
        pytest.param("b, c]", "v = [a, ", "]\n", PY, "b, c", id="closing-bracket-in-suffix"),
        pytest.param("    return 1\n}\n\nint main() {", "int f(void) {\n", "}\n", C,
                     "    return 1", id="brace-closer-already-in-suffix"),
        pytest.param("    return 1;\n}\n\nint g() {}", "int f(void) {\n", "", C,
                     "    return 1;\n}", id="brace-closer-kept-at-eof"),
        pytest.param("return x;\n    }\n    public void g() {}", "class A {\n  int f() {\n    ",
                     "\n  }\n}\n", JAVA, "return x;", id="java-method-end"),
        pytest.param("return a\n    return a", BODY, "\n    return a\n", PY, "return a",
                     id="repeats-next-line"),
        pytest.param("", BODY, "", PY, "", id="empty"),
        pytest.param("x = 1\r\ny = 2\r\n```", "", "", PY, "x = 1\ny = 2", id="crlf"),
        pytest.param("<|im_end|>hello", BODY, "", PY, "", id="control-token"),
    ],
)
def test_cut(raw: str, prefix: str, suffix: str, language, expected: str) -> None:
    assert cut(raw, prefix, suffix, language) == expected


@pytest.mark.parametrize(
    ("line", "prose"),
    [
        pytest.param("This function returns the sum.", True, id="sentence"),
        pytest.param("Explanation:", True, id="marker"),
        pytest.param("In this example, we add two numbers", True, id="in-this"),
        pytest.param("return a + b", False, id="code"),
        pytest.param("    else:", False, id="keyword"),
        pytest.param("# This is a comment about the code", False, id="comment"),
        pytest.param("Point = namedtuple('Point', 'x y')", False, id="assignment"),
        pytest.param("", False, id="blank"),
    ],
)
def test_is_prose(line: str, prose: bool) -> None:
    assert is_prose(line, PY) is prose


def test_should_stop_once_cut_is_decided() -> None:
    assert not should_stop("return a", BODY, "\n", PY)
    assert not should_stop("return a\n", BODY, "\n", PY)
    assert should_stop("return a\n```\n", BODY, "\n", PY)
    assert should_stop("return a\nprint(1)\n", BODY, "\n", PY)
    # Mid-line: one line only.
    assert should_stop("a + b)\n", "x = max(", "), 3\n", PY)


def _old_next_line(suffix: str) -> str:
    """What Cursor.of computed before it stopped splitting the whole suffix."""
    rest = suffix.partition("\n")[2]
    return next((line for line in rest.split("\n") if line.strip()), "")


@pytest.mark.parametrize("suffix", ["", "x", "x\n", "x\n\n\n", "x\n  \n\tlast", "\nfirst\nsecond",
                                    ")\n\n    return y\n", "a\n \n \n b \n"])
def test_the_cursor_finds_the_next_line_as_before(suffix: str) -> None:
    cursor = Cursor.of("def f():\n    ", suffix)
    assert cursor.next_line == _old_next_line(suffix)
    assert cursor.line_suffix == suffix.partition("\n")[0]


def test_the_cursor_is_computed_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """should_stop ran at every generated line and built the cursor context each time."""
    from compilot.models import embedded_model_path
    from compilot.server import engine as engine_mod
    from compilot.server.completion import generate_ranked
    from compilot.server.engine import Sampling
    from compilot.settings import CompletionSettings, ModelSettings

    engine = engine_mod.load(embedded_model_path(), ModelSettings())
    made = []
    real = Cursor.of.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Cursor, "of", classmethod(lambda cls, p, s: made.append(1)
                                                  or real(cls, p, s)))
    prefix = 'def table(n):\n    """Lines of n times 1 to 10."""\n    '
    ranked, raw = generate_ranked(engine, prefix, "\n", language_for("python"),
                                  Sampling.from_settings(CompletionSettings(candidates=2,
                                                                            max_tokens=48)))
    assert ranked and sum(r.count("\n") for r in raw) >= 2  # lines were generated
    assert len(made) == 1
    engine.llm.close()
