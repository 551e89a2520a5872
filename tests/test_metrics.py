"""pass@k against hand-computed values, at_k, exact match and edit distance."""

from __future__ import annotations

from math import comb

import pytest

from compilot.training import metrics


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        pytest.param(5, 2, 1, 0.4, id="k1-is-fraction-correct"),
        pytest.param(5, 2, 2, 1 - comb(3, 2) / comb(5, 2), id="n5-c2-k2-is-0.7"),
        pytest.param(10, 0, 1, 0.0, id="none-correct"),
        pytest.param(10, 0, 10, 0.0, id="none-correct-k-n"),
        pytest.param(10, 10, 1, 1.0, id="all-correct"),
        pytest.param(5, 3, 3, 1.0, id="n-minus-c-below-k"),
        pytest.param(1, 1, 1, 1.0, id="single-sample"),
        pytest.param(200, 7, 10, 1 - comb(193, 10) / comb(200, 10), id="codex-size"),
        # Binomials this large overflow a float; the product form does not.
        pytest.param(2000, 1, 100, 100 / 2000, id="one-correct-is-k-over-n"),
    ],
)
def test_pass_at_k(n: int, c: int, k: int, expected: float) -> None:
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [
        pytest.param(5, 2, 6, id="k-above-n"),
        pytest.param(5, 6, 1, id="c-above-n"),
        pytest.param(5, -1, 1, id="negative-c"),
        pytest.param(-1, 0, 1, id="negative-n"),
        pytest.param(5, 2, 0, id="k-zero"),
    ],
)
def test_pass_at_k_rejects(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        metrics.pass_at_k(n, c, k)


@pytest.mark.parametrize(
    ("results", "k", "expected"),
    [
        pytest.param([[True, False], [False, False]], 1, 0.25, id="k1-mean-of-fractions"),
        pytest.param([[True, False], [False, False]], 2, 0.5, id="k2-any-of-two"),
        pytest.param([[True] * 5, [False, False, True, False, True]], 2, (1 + 0.7) / 2,
                     id="mixed-problems"),
        pytest.param([[True, False, False], [False] * 5], 1, (1 / 3 + 0) / 2,
                     id="different-sample-counts"),
    ],
)
def test_at_k(results: list[list[bool]], k: int, expected: float) -> None:
    assert metrics.at_k(results, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("results", "k"),
    [
        pytest.param([], 1, id="no-problems"),
        pytest.param([[True, True], [True]], 2, id="a-problem-with-too-few-samples"),
    ],
)
def test_at_k_rejects(results: list[list[bool]], k: int) -> None:
    with pytest.raises(ValueError):
        metrics.at_k(results, k)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        pytest.param("return x\n", "return x\n", True, id="identical"),
        pytest.param("return x   \n", "return x", True, id="trailing-spaces-and-newline"),
        pytest.param("\n\n    return x\n\n", "    return x", True, id="blank-lines-around"),
        pytest.param("a\r\nb\r\n", "a\nb\n", True, id="crlf"),
        pytest.param("a\n\nb", "a\nb", False, id="inner-blank-line-counts"),
        pytest.param("    return x", "return x", False, id="indentation-counts"),
        pytest.param("return x", "return y", False, id="different"),
        pytest.param("", "\n \n", True, id="empty-and-blank"),
    ],
)
def test_exact_match(prediction: str, reference: str, expected: bool) -> None:
    assert metrics.exact_match(prediction, reference) is expected


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        pytest.param("kitten", "sitting", 3, id="kitten-sitting"),
        pytest.param("", "", 0, id="both-empty"),
        pytest.param("", "abc", 3, id="one-empty"),
        pytest.param("abc", "", 3, id="other-empty"),
        pytest.param("flaw", "lawn", 2, id="flaw-lawn"),
        pytest.param("same", "same", 0, id="equal"),
        pytest.param("héllo", "hello", 1, id="accent-is-one-character"),
        pytest.param("日本語", "日本", 1, id="cjk"),
        pytest.param("a🐍b", "ab", 1, id="astral-code-point"),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert metrics.edit_distance(a, b) == distance
    assert metrics.edit_distance(b, a) == distance


@pytest.mark.parametrize(
    ("a", "b", "similarity"),
    [
        pytest.param("", "", 1.0, id="both-empty"),
        pytest.param("abc", "abc", 1.0, id="equal"),
        pytest.param("abc", "", 0.0, id="one-empty"),
        pytest.param("kitten", "sitting", 1 - 3 / 7, id="kitten-sitting"),
        pytest.param("abcd", "wxyz", 0.0, id="all-different"),
    ],
)
def test_edit_similarity(a: str, b: str, similarity: float) -> None:
    assert metrics.edit_similarity(a, b) == pytest.approx(similarity)


def test_dynamic_programme_matches_rapidfuzz_or_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    # The plain DP runs when rapidfuzz is missing; both must agree where both exist.
    pairs = [("kitten", "sitting"), ("def f(x):\n    return x", "def g(y):\n  return y + 1")]
    expected = [metrics.edit_distance(a, b) for a, b in pairs]
    from compilot.server import repair  # where edit_distance lives (metrics re-exports it)

    monkeypatch.setattr(repair, "_Levenshtein", None)
    assert [metrics.edit_distance(a, b) for a, b in pairs] == expected
    assert expected[0] == 3


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([1.0, 2.0, 4.0], 7 / 3, id="values"),
        pytest.param([], None, id="none-is-not-zero"),
    ],
)
def test_mean(values: list[float], expected: float | None) -> None:
    assert metrics.mean(values) == (pytest.approx(expected) if expected is not None else None)


def test_code_bleu_of_identical_code_is_one() -> None:
    code = "    total = 0\n    for x in xs:\n        total += x\n    return total\n"
    scores = metrics.code_bleu([code], [code])
    assert scores["codebleu"] == pytest.approx(1.0)
    assert set(scores) == {"codebleu", "codebleu.ngram_match", "codebleu.weighted_ngram_match",
                           "codebleu.syntax_match", "codebleu.dataflow_match"}


def test_code_bleu_counts_an_empty_prediction_against_the_model() -> None:
    reference = "    return sorted(xs)[len(xs) // 2]\n"
    guess = "    return sorted(xs)[0]\n"
    alone = metrics.code_bleu([guess], [reference])
    halved = metrics.code_bleu([guess, ""], [reference, reference])
    assert 0.0 < alone["codebleu"] < 1.0
    assert halved["codebleu"] == pytest.approx(alone["codebleu"] / 2, abs=1e-4)
    assert metrics.code_bleu([""], [reference])["codebleu"] == 0.0
    with pytest.raises(ValueError, match="predictions"):
        metrics.code_bleu(["x"], [])
