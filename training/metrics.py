"""Scores of completions: pass@k and its kin, exact match, edit distance and similarity."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# one definition, with the server's ranking of fixes (re-exported)
from compilot.server.repair import edit_distance as edit_distance


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of pass@k from ``n`` samples of which ``c`` are correct.

    Chen et al. 2021, "Evaluating Large Language Models Trained on Code" (the Codex paper),
    section 2.1 and figure 3: ``1 - C(n-c, k) / C(n, k)``, the chance that k samples drawn
    without replacement from the n include a correct one. Computed as the product
    ``1 - prod(1 - k / i for i in n-c+1..n)``, which equals it and never forms the huge
    binomials. Reads as compile@k or exec@k when ``c`` counts samples that compile or run.
    """
    if n < 0 or c < 0 or k < 1:
        raise ValueError(f"need n >= 0, c >= 0, k >= 1; got n={n}, c={c}, k={k}")
    if c > n:
        raise ValueError(f"c={c} correct samples out of n={n}: c must not exceed n")
    if k > n:
        raise ValueError(f"k={k} exceeds the n={n} samples: draw at least k samples")
    if n - c < k:  # every draw of k holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def at_k(results: Sequence[Sequence[bool]], k: int) -> float:
    """Mean over problems of :func:`pass_at_k`, each problem given as its samples' outcomes.

    The outcome is whatever is counted: passing the tests (pass@k), compiling (compile@k, the
    thesis's comp@k: at least one of k samples compiles) or running without error (exec@k).
    """
    if not results:
        raise ValueError("at_k needs at least one problem")
    scores = []
    for i, samples in enumerate(results):
        if len(samples) < k:
            raise ValueError(f"problem {i} has {len(samples)} samples, fewer than k={k}")
        scores.append(pass_at_k(len(samples), sum(bool(s) for s in samples), k))
    return math.fsum(scores) / len(scores)


def _normalized(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def exact_match(prediction: str, reference: str) -> bool:
    """Equal after normalizing both: line endings (CRLF, CR) to LF, trailing whitespace of each
    line removed, leading and trailing blank lines dropped. Indentation counts: in Python it
    is meaning, and a completion must match the indentation of the code around it."""
    return _normalized(prediction) == _normalized(reference)


def edit_similarity(a: str, b: str) -> float:
    """``1 - edit_distance / max(len(a), len(b))`` in [0, 1]; 1.0 for two empty strings."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - edit_distance(a, b) / longest


def mean(values: Iterable[float]) -> float | None:
    """The arithmetic mean, None for no values (a score that was not measured, not zero)."""
    items = list(values)
    return math.fsum(items) / len(items) if items else None


CODEBLEU_PARTS = ("codebleu", "ngram_match_score", "weighted_ngram_match_score",
                  "syntax_match_score", "dataflow_match_score")


def code_bleu(predictions: Sequence[str], references: Sequence[str],
              language: str = "python") -> dict[str, float]:
    """Corpus CodeBLEU (Ren et al. 2020) of ``predictions`` against ``references`` and its four
    parts (n-gram, weighted n-gram, syntax and data-flow match), from the ``codebleu`` package
    with the language's tree-sitter grammar package (e.g. ``tree-sitter-python``).

    codebleu 0.7.0 declares ``tree-sitter<0.23`` but runs on the 0.26 this project uses; the
    Makefile installs it without its declared dependencies so that it cannot downgrade it.
    Empty predictions (codebleu would divide by zero on them) are left out and the scores of
    the rest scaled by their share: a model that offers nothing is not rewarded for it.
    """
    try:
        from codebleu import calc_codebleu
    except ImportError as exc:
        raise RuntimeError("CodeBLEU needs the 'codebleu' package: pip install --no-deps "
                           "codebleu==0.7.0 tree-sitter-python") from exc
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    keep = [i for i, p in enumerate(predictions) if p.strip()]
    scores = calc_codebleu([references[i] for i in keep], [predictions[i] for i in keep],
                           lang=language) if keep else dict.fromkeys(CODEBLEU_PARTS, 0.0)
    share = len(keep) / len(predictions)
    return {(k if k == "codebleu" else f"codebleu.{k.removesuffix('_score')}"):
            round(float(scores[k]) * share, 4) for k in CODEBLEU_PARTS}
